"""The fund's payout code on the embedded store, with its files on disk: a claim stored before
names were checked at submission (its account holder's name holds U+0001) is put on hold and
the rest of the batch is proposed and paid; four eyes; the SEPA file lies encrypted in the
store's files and is decrypted only for a released batch; a new data key covers the files."""
import base64
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from xml.etree import ElementTree

import pytest
from bson import ObjectId
from nameko.testing.services import worker_factory

from common import clock
from common.crypto import DataCipher
from common.errors import Conflict, Forbidden, NotFound
from common.storage import OnceRequest
from services.travel_costs.dependencies import FundAccount, FundSettings
from services.travel_costs.domain import FundRules
from services.travel_costs.service import TravelCostsService
from services.travel_costs.payouts import FILE_PART, SealedParts
from services.travel_costs.sepa import validate
from services.travel_costs.storage import CLAIMS, PAYOUT_FILE_PARTS, TravelCostsStore

OLD, NEW = ("k1", b"\x01" * 32), ("k2", b"\x02" * 32)
SETTINGS = FundSettings(rules=FundRules(),
                        account=FundAccount("Reiskostenfonds Mantelzorg", "NL91ABNA0417164300",
                                            "ABNANL2A"),
                        sepa_schema="pain.001.001.09", declaration_timeout=10,
                        payout_lease_seconds=1800)
PROPOSER = {"sub": "fund-proposer", "role": "fund", "municipality": None}
RELEASER = {"sub": "fund-releaser", "role": "fund", "municipality": None}
ACCOUNTS = [{"iban": "NL20INGB0001234567", "bic": "INGBNL2A", "account_holder": "Ånna Willemsen"},
            {"iban": "NL44RABO0123456789", "bic": "RABONL2U", "account_holder": "A. de Vries\x01"},
            {"iban": "NL39ABNA0123456789", "bic": "ABNANL2A", "account_holder": "Piet Bakkerszoon"}]
REFERENCE = "MZ-TESTREF1"


def opened_store(folder):
    opened = TravelCostsStore("mantelzorg_travel_costs", "", str(folder))
    opened.ensure_indexes()
    opened.migrate()
    return opened


@pytest.fixture(scope="module")
def module_store(tmp_path_factory):
    """One store on disk for the module's tests: closing one takes the embedded server
    seconds."""
    opened = opened_store(tmp_path_factory.mktemp("store"))
    yield opened
    opened.close()


@pytest.fixture
def store(module_store):
    """The module's store, every collection emptied (its indexes kept) for this test."""
    for name in module_store.db.list_collection_names():
        module_store.db[name].delete_many({})
    return module_store


@pytest.fixture
def store_of_its_own(tmp_path):
    """A store whose files on disk in ``tmp_path`` hold only what this test wrote."""
    opened = opened_store(tmp_path)
    yield opened
    opened.close()


def fund(store, cipher):
    # a call without a request identity: each run is done as asked
    return worker_factory(TravelCostsService, store=store, fund=SETTINGS,
                          keys=SimpleNamespace(cipher=cipher), once=OnceRequest(store, None, cipher))


def approved_claims(store, cipher, accounts=ACCOUNTS):
    """Approved claims as the fund stored them, the second before names were checked."""
    now = clock.now_millis()
    ids = []
    for number, account in enumerate(accounts):
        claim_id = str(ObjectId())
        store[CLAIMS].insert_one({
            "_id": claim_id, "status": "APPROVED", "caregiver_key": f"key-{number}",
            "declaration_reference": REFERENCE, "batch_id": None, "trips": [],
            "amount_cents": 1863 * (number + 1), "grants": {str(now.year): 1863},
            "notes": None, "status_reason": None, "iban_masked": "NL** **** **** **45 67",
            "account": cipher.encrypt(account, context=claim_id),
            "submitted_at": now - timedelta(days=1), "updated_at": now, "history": []})
        ids.append(claim_id)
    return ids


def served_file(service, batch_id):
    size, data = None, b""
    while size is None or len(data) < size:
        piece = service.payout_file(batch_id, len(data), RELEASER)
        size = piece["size"]
        data += base64.b64decode(piece["data"])
    return data


def released_batch(store, cipher, accounts):
    """A batch of these accounts' claims, proposed by one fund member and released by
    another, and its file as served."""
    approved_claims(store, cipher, accounts)
    batch = fund(store, cipher).create_payout_batch(PROPOSER)
    fund(store, cipher).release_payout_batch(batch["id"], RELEASER)
    return batch, served_file(fund(store, cipher), batch["id"])


def end_to_end_ids(xml):
    return [e.text for e in ElementTree.fromstring(xml).iter() if e.tag.endswith("}EndToEndId")]


def test_a_claim_the_file_cannot_carry_is_held_and_the_rest_is_proposed_and_paid(store):
    cipher = DataCipher([OLD])
    first, unwritable, third = approved_claims(store, cipher)
    proposer = fund(store, cipher)
    batch = proposer.create_payout_batch(PROPOSER)
    assert (batch["status"], batch["claim_count"], batch["total_euros"]) == (
        "AWAITING_RELEASE", 2, "74.52")

    held = store.claim(unwritable)
    assert held["status"] == "ON_HOLD" and held["batch_id"] is None
    assert "name has characters a bank transfer cannot carry" in held["status_reason"]
    assert "de Vries" not in held["status_reason"]
    [(event_type, payload)] = [c.args[1:] for c in proposer.outbox.record.call_args_list]
    assert (event_type, payload["id"], payload["status"]) == (
        "travel_claim.on_hold", unwritable, "ON_HOLD")
    logged = proposer.log.warning.call_args_list
    assert any(c.kwargs.get("claim_id") == unwritable for c in logged)
    assert "de Vries" not in repr(logged)

    # Proposed: nothing paid, no file served, and the proposer cannot release it.
    assert {store.claim(i)["status"] for i in (first, third)} == {"APPROVED"}
    releaser = fund(store, cipher)
    with pytest.raises(Conflict):
        releaser.payout_file(batch["id"], 0, RELEASER)
    with pytest.raises(Forbidden):
        proposer.release_payout_batch(batch["id"], PROPOSER)
    assert not releaser.outbox.record_many.called

    released = releaser.release_payout_batch(batch["id"], RELEASER)
    assert released["status"] == "RELEASED" and released["released_at"]
    assert {store.claim(i)["status"] for i in (first, third)} == {"PAID"}
    assert store.claim(unwritable)["status"] == "ON_HOLD"
    [(_session, events)] = [c.args for c in releaser.outbox.record_many.call_args_list]
    assert sorted(p["id"] for _type, p in events) == sorted([first, third])
    assert {t for t, _p in events} == {"travel_claim.paid"}
    with pytest.raises(Conflict):
        fund(store, cipher).release_payout_batch(batch["id"], {**RELEASER, "sub": "third"})

    xml = served_file(releaser, batch["id"])
    validate(xml, "pain.001.001.09")
    assert end_to_end_ids(xml) == [first, third]
    with pytest.raises(NotFound):
        releaser.release_payout_batch(str(ObjectId()), RELEASER)


def test_a_batch_of_claims_none_of_which_can_be_written_is_refused_and_holds_them(store):
    from common.errors import BadUserInput

    cipher = DataCipher([OLD])
    [only] = approved_claims(store, cipher, ACCOUNTS[1:2])
    with pytest.raises(BadUserInput):
        fund(store, cipher).create_payout_batch(PROPOSER)
    assert store.claim(only)["status"] == "ON_HOLD"
    assert fund(store, cipher).payout_batches(20, None, RELEASER) == []


def _store_files(path):
    return [(f, f.read_bytes()) for f in Path(path).rglob("*") if f.is_file()]


def test_sepa_files_lie_encrypted_in_the_store_and_its_journal(store_of_its_own, tmp_path):
    store = store_of_its_own
    cipher = DataCipher([OLD])
    accounts = [ACCOUNTS[0], ACCOUNTS[2]]
    ids = approved_claims(store, cipher, accounts)
    batch = fund(store, cipher).create_payout_batch(PROPOSER)
    fund(store, cipher).release_payout_batch(batch["id"], RELEASER)
    files = _store_files(tmp_path)
    everything = b"".join(content for _name, content in files)
    # The store's files are readable as they are: what is stored in plain is found there.
    assert REFERENCE.encode() in everything and ids[0].encode() in everything
    for account in accounts:
        for value in (account["iban"], account["account_holder"], "Anna Willemsen"):
            found = value.encode() in everything
            assert not found, f"{value} lies in plain in the store's files"
    assert b"CstmrCdtTrfInitn" not in everything and b"EndToEndId" not in everything
    parts = list(store[PAYOUT_FILE_PARTS].find({"batch_id": batch["id"]}))
    assert parts and all(set(p["sealed"]) == {"kid", "nonce", "ct"} for p in parts)


def test_a_new_data_key_covers_the_sepa_files(store):
    batch, before = released_batch(store, DataCipher([OLD]), [ACCOUNTS[0]])

    rotating = fund(store, DataCipher([NEW, OLD]))
    while rotating.reencrypt_personal_data(batch=50)["remaining"]:
        pass
    assert {p["sealed"]["kid"] for p in store[PAYOUT_FILE_PARTS].find()} == {"k2"}
    assert served_file(fund(store, DataCipher([NEW])), batch["id"]) == before


def test_a_batch_tells_its_proposer_that_it_is_theirs_and_names_nobody(store):
    cipher = DataCipher([OLD])
    approved_claims(store, cipher, ACCOUNTS[:1])
    proposer, releaser = fund(store, cipher), fund(store, cipher)
    proposed = proposer.create_payout_batch(PROPOSER)
    assert proposed["proposed_by_you"] is True
    assert [b["proposed_by_you"] for b in proposer.payout_batches(20, None, PROPOSER)] == [True]
    assert [b["proposed_by_you"] for b in releaser.payout_batches(20, None, RELEASER)] == [False]
    assert PROPOSER["sub"] not in repr(releaser.payout_batches(20, None, RELEASER))
    assert releaser.release_payout_batch(proposed["id"], RELEASER)["proposed_by_you"] is False
def test_a_file_an_earlier_release_stored_in_plain_is_encrypted_and_the_plain_one_deleted(store):
    import gridfs

    from services.travel_costs.storage import LEGACY_FILES, PAYOUT_BATCHES

    cipher = DataCipher([OLD])
    batch, content = released_batch(store, cipher, [ACCOUNTS[0]])
    # As the earlier release kept it: the file as written, in GridFS, named by the batch.
    bucket = gridfs.GridFSBucket(store.db, bucket_name=LEGACY_FILES)
    file_id = bucket.upload_from_stream(f"{batch['id']}.xml", content)
    store[PAYOUT_FILE_PARTS].delete_many({})
    store[PAYOUT_BATCHES].update_one({"_id": batch["id"]}, {"$set": {"file_id": file_id},
                                                            "$unset": {"file_size": ""}})

    report = fund(store, cipher).reencrypt_personal_data(batch=50)
    assert report["remaining"] == 0
    assert list(bucket.find({})) == []
    assert "file_id" not in store.batch(batch["id"])
    assert {p["sealed"]["kid"] for p in store[PAYOUT_FILE_PARTS].find()} == {"k1"}
    assert served_file(fund(store, cipher), batch["id"]) == content


def test_migrate_removes_the_dead_owner_and_shows_batches_paid_at_once_as_released(tmp_path):
    from pymongo import ASCENDING

    from services.travel_costs.storage import DECLARATIONS, PAYOUT_BATCHES

    earlier = TravelCostsStore("mantelzorg_travel_costs", "", str(tmp_path / "earlier"))
    try:
        earlier[DECLARATIONS].create_index([("owner", ASCENDING)])
        earlier[CLAIMS].create_index([("batch_id", ASCENDING), ("status", ASCENDING)])
        earlier[DECLARATIONS].insert_one({"_id": REFERENCE, "status": "ISSUED", "owner": "sub-1"})
        earlier[CLAIMS].insert_one({"_id": "c1", "status": "APPROVED", "owner": "sub-1"})
        paid_at = clock.now_millis()
        earlier[PAYOUT_BATCHES].insert_one({"_id": "b1", "status": "PAID", "paid_at": paid_at})
        earlier.ensure_indexes()
        for _twice in range(2):      # every replica runs it at start
            earlier.migrate()
        assert "owner_1" not in earlier[DECLARATIONS].index_information()
        assert "batch_id_1_status_1" not in earlier[CLAIMS].index_information()
        assert "owner" not in earlier.declaration(REFERENCE)
        assert earlier.claim("c1") == {"_id": "c1", "status": "APPROVED", "batch_id": None}
        batch = earlier.batch("b1")
        assert (batch["status"], batch["released_at"]) == ("RELEASED", paid_at)
    finally:
        earlier.close()


def test_work_that_stopped_is_taken_up_once_its_lease_ran_out(store):
    """A release that stopped halfway is finished by the next payout call; a proposal that
    stopped before its file was stored is given up and its claims are free again."""
    from services.travel_costs.storage import PAYOUT_BATCHES

    cipher = DataCipher([OLD])
    paid_first, unpaid = approved_claims(store, cipher, [ACCOUNTS[0], ACCOUNTS[2]])
    batch = fund(store, cipher).create_payout_batch(PROPOSER)
    past = clock.now_millis() - timedelta(seconds=1)
    # The release stopped after its first claim: one claim PAID, the batch RELEASING.
    store[CLAIMS].update_one({"_id": paid_first}, {"$set": {"status": "PAID"}})
    store[PAYOUT_BATCHES].update_one({"_id": batch["id"]}, {"$set": {
        "status": "RELEASING", "lease_until": past, "released_at": past}})
    # A proposal stopped before its file: its claim reserved, no file.
    [stranded] = approved_claims(store, cipher, [ACCOUNTS[0]])
    store[PAYOUT_BATCHES].insert_one({"_id": "stopped", "status": "PREPARING", "created_at": past,
                                      "lease_until": past, "schema": "pain.001.001.09",
                                      "created_by": {"role": "fund", "sub": "x"}, "history": []})
    store[CLAIMS].update_one({"_id": stranded}, {"$set": {"batch_id": "stopped"}})

    proposed = fund(store, cipher).create_payout_batch(RELEASER)
    assert store.batch(batch["id"])["status"] == "RELEASED"
    assert store.claim(unpaid)["status"] == "PAID"
    assert store.batch("stopped")["status"] == "GIVEN_UP"
    assert proposed["claim_count"] == 1 and store.claim(stranded)["batch_id"] == proposed["id"]


def test_a_file_written_in_pieces_is_stored_in_whole_parts_and_read_back_the_same(store):
    """The file is sealed and stored a part at a time as it is written: every part but the
    last holds exactly FILE_PART bytes, whatever the pieces written."""
    cipher = DataCipher([OLD])
    content = bytes(range(256)) * (FILE_PART * 5 // 2 // 256) + b"end"
    parts = SealedParts(store, cipher, "batch-1")
    for start in range(0, len(content), 300_001):
        parts.write(content[start:start + 300_001])
    assert parts.close() == (len(content), 3)
    read = [cipher.decrypt(store.file_part("batch-1", n)["sealed"], context=f"batch-1:{n}")
            .encode("latin-1") for n in range(3)]
    assert [len(piece) for piece in read[:2]] == [FILE_PART, FILE_PART]
    assert b"".join(read) == content
    # A second run of the same batch replaces the parts of the first.
    again = SealedParts(store, cipher, "batch-1")
    again.write(b"short")
    assert again.close() == (5, 1)
    assert store.file_part("batch-1", 1) is None
