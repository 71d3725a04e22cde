"""Rotation of the data key: the declaration and travel_costs services re-encrypt stored
personal data with the new key, on the embedded store, so that the earlier key can be
dropped."""
from types import SimpleNamespace

from nameko.testing.services import worker_factory

from common.crypto import DataCipher
from services.declaration.service import DeclarationService
from services.declaration.storage import DECLARATIONS

OLD, NEW, LOST = ("k1", b"\x01" * 32), ("k2", b"\x02" * 32), ("k0", b"\x09" * 32)


def personal(number):
    return {"caregiver": {"bsn": f"11122233{number}", "name": f"Mantelzorger {number}"}}


def test_personal_data_moves_to_the_new_key_in_batches(declaration_store):
    store = declaration_store
    old = DataCipher([OLD])
    for number in range(3):
        store[DECLARATIONS].insert_one({"_id": f"d{number}", "reference": f"R{number}",
                                        "personal": old.encrypt(personal(number), context=f"d{number}")})
    store[DECLARATIONS].insert_one({"_id": "lost", "reference": "RL",
                                    "personal": DataCipher([LOST]).encrypt({}, context="lost")})
    store[DECLARATIONS].insert_one({"_id": "none", "reference": "RN"})   # nothing personal

    service = worker_factory(DeclarationService, store=store,
                             keys=SimpleNamespace(cipher=DataCipher([NEW, OLD])))
    first = service.reencrypt_personal_data(batch=2)
    assert first == {"key_id": "k2", "reencrypted": 2, "remaining": 1, "unreadable": 1,
                     "unknown_keys": ["k0"]}
    assert service.reencrypt_personal_data(batch=2)["remaining"] == 0
    assert service.reencrypt_personal_data(batch=2)["reencrypted"] == 0

    # the earlier key dropped: everything it encrypted reads with the new key alone
    new_only = DataCipher([NEW])
    for number in range(3):
        sealed = store[DECLARATIONS].find_one({"_id": f"d{number}"})["personal"]
        assert sealed["kid"] == "k2"
        assert new_only.decrypt(sealed, context=f"d{number}") == personal(number)
    assert store[DECLARATIONS].find_one({"_id": "lost"})["personal"]["kid"] == "k0"
    assert "personal" not in store[DECLARATIONS].find_one({"_id": "none"})


def test_verification_codes_move_to_the_new_key_too(declaration_store):
    store = declaration_store
    old = DataCipher([OLD])
    store[DECLARATIONS].insert_one({
        "_id": "d1", "reference": "R1", "personal": old.encrypt(personal(1), context="d1"),
        "verification_code": old.encrypt("ABCD-EFGH-JKMN", context="d1:verification_code")})
    service = worker_factory(DeclarationService, store=store,
                             keys=SimpleNamespace(cipher=DataCipher([NEW, OLD])))
    report = service.reencrypt_personal_data(batch=10)
    assert (report["reencrypted"], report["remaining"]) == (2, 0)

    stored = store[DECLARATIONS].find_one({"_id": "d1"})
    new_only = DataCipher([NEW])
    assert new_only.decrypt(stored["verification_code"], context="d1:verification_code") \
        == "ABCD-EFGH-JKMN"
    assert new_only.decrypt(stored["personal"], context="d1") == personal(1)
def test_the_readers_in_the_log_of_reads_move_to_the_new_key_too(declaration_store):
    from services.declaration.storage import PERSONAL_DATA_READS

    store = declaration_store
    old = DataCipher([OLD])
    for number in range(2):
        store[PERSONAL_DATA_READS].insert_one({
            "_id": f"r{number}", "what": "aanvraag R1 bekeken",
            "reader": old.encrypt({"sub": f"staff-{number}"}, context=f"r{number}")})
    service = worker_factory(DeclarationService, store=store,
                             keys=SimpleNamespace(cipher=DataCipher([NEW, OLD])))
    report = service.reencrypt_personal_data(batch=10)
    assert (report["reencrypted"], report["remaining"]) == (2, 0)
    stored = store[PERSONAL_DATA_READS].find_one({"_id": "r1"})
    assert DataCipher([NEW]).decrypt(stored["reader"], context="r1") == {"sub": "staff-1"}


def test_the_accounts_of_travel_claims_move_to_the_new_key():
    from services.travel_costs.service import TravelCostsService
    from services.travel_costs.storage import CLAIMS, TravelCostsStore

    store = TravelCostsStore("rotation_probe", "", ":memory:")
    try:
        _accounts_move_to_the_new_key(store, TravelCostsService, CLAIMS)
    finally:
        store.close()


def _accounts_move_to_the_new_key(store, TravelCostsService, CLAIMS):
    old = DataCipher([OLD])
    account = {"iban": "NL91ABNA0417164300", "bic": "ABNANL2A", "account_holder": "A. de Vries"}
    for number in range(3):
        store[CLAIMS].insert_one({"_id": f"c{number}", "account": old.encrypt(account, context=f"c{number}")})
    service = worker_factory(TravelCostsService, store=store,
                             keys=SimpleNamespace(cipher=DataCipher([NEW, OLD])))
    assert service.reencrypt_personal_data(batch=2) == {
        "key_id": "k2", "reencrypted": 2, "remaining": 1, "unreadable": 0, "unknown_keys": []}
    assert service.reencrypt_personal_data(batch=2)["remaining"] == 0
    new_only = DataCipher([NEW])
    for number in range(3):
        assert new_only.decrypt(store[CLAIMS].find_one({"_id": f"c{number}"})["account"],
                                context=f"c{number}") == account
