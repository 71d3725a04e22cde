"""How the embedded store answers every named query and write of every store class.

Each public method of each ``storage.py`` store (and of ``common.storage.DocumentStore`` and
``OutboxStore``) is
called once on an embedded store in memory; every command it sends is recorded, and the
store is asked with ``explain`` how it answers that command's filter. A collection scan of a
collection that grows with the use of the platform fails: its cost would grow with every
declaration, claim or order stored (issue 26). A ``findAndModify`` on such a collection fails
as well: the embedded store writes it with a filter of the ``_id`` and the original query
under an ``$and``, which no index serves, so it reads the whole collection on every call.

Not growing: a year's counters, the search index's generations, the one stock document, the
municipalities (342) with their choices, the PC4 areas (about 4,000), the campaigns (a few a
year), the fund's SEPA files of an earlier release (in GridFS as written: only read, sealed
and deleted now). A method that returns a whole collection (no filter, no limit) reads what
it answers and is not a scan to avoid.

A filter whose first clause is an equality on ``_id`` (a write only while a condition holds,
``{_id, status}``) is answered from the ``_id`` index, though ``explain`` reports a scan for
it: the store's executor looks the clauses up in their order. ``{status, _id}`` reads every
document of that status and fails here. ``migrate`` runs once per release, not per request."""
import functools
import re
from datetime import datetime, timedelta, timezone

import bson
import gridfs
import pymongo
import pytest
from pymongo import monitoring

import common.storage
from common.storage import DocumentStore, OutboxStore
from gateway.storage import GatewayStore
from services.campaign.domain import OrderChange
from services.campaign.storage import CampaignStore
from services.declaration.storage import DeclarationStore
from services.notifications.storage import NotificationsStore
from services.registry.storage import RegistryStore
from services.travel_costs.storage import TravelCostsStore

NOT_GROWING = {"counters", "generations", "stock", "municipalities", "municipality_settings",
               "pc4_areas", "campaigns", "payout_files.files", "payout_files.chunks"}
NOW = datetime(2026, 3, 1, 12, tzinfo=timezone.utc)
# Operator walks, once per batch of an operator's command, never per request: republishing a
# collection in pages of its ids (the embedded store has no index walk by _id range), and
# the count of values sealed with keys no longer configured ($nin, which no index serves).
OPERATOR_WALKS = {"page", "unknown_key_ids", "reencrypt: distinct", "reencrypt: aggregate"}
# Methods that are not queries: the store's own life cycle and helpers for a transaction.
NOT_NAMED_QUERIES = {"ensure_indexes", "migrate", "close", "ping", "in_transaction",
                     "in_own_transaction",
                     "after_commit"}


class Recorder(monitoring.CommandListener):
    def __init__(self):
        self.commands = []

    def started(self, event):
        self.commands.append((event.command_name, event.command.to_dict()
                              if hasattr(event.command, "to_dict") else dict(event.command)))

    def succeeded(self, event):
        pass

    def failed(self, event):
        pass


@pytest.fixture
def recorded(monkeypatch):
    recorder = Recorder()
    monkeypatch.setattr(common.storage, "MongoClient",
                        functools.partial(pymongo.MongoClient, event_listeners=[recorder]))
    return recorder


def _filters(name, command):
    """(collection, filter, limited) of each statement of a command that selects documents;
    None for a command that selects none."""
    if name == "find":
        yield command["find"], command.get("filter") or {}, bool(command.get("limit"))
    elif name == "update":
        for statement in command["updates"]:
            yield command["update"], statement["q"], not statement.get("multi")
    elif name == "delete":
        for statement in command["deletes"]:
            yield command["delete"], statement["q"], statement.get("limit") == 1
    elif name in ("count", "distinct"):
        yield command[name], command.get("query") or {}, False
    elif name == "aggregate":
        first = (command.get("pipeline") or [{}])[0]
        yield command["aggregate"], first.get("$match", {}), False


def _by_id_first(query):
    """Whether the filter's first clause is an equality on ``_id``: the embedded store's
    executor looks a filter's clauses up in their order and answers that one from the ``_id``
    index, while its ``explain`` reports a scan for any filter of ``_id`` and more. A clause
    of an operator (``$or``, ``$and``) before or after it makes it read every document."""
    if next(iter(query), None) != "_id" or any(field.startswith("$") for field in query):
        return False
    value = query["_id"]
    if not isinstance(value, dict):
        return not isinstance(value, (re.Pattern, bson.Regex))
    return list(value) in (["$eq"], ["$in"]) and not any(
        isinstance(each, (dict, re.Pattern, bson.Regex))
        for each in (value["$in"] if "$in" in value else [value["$eq"]]))


def scans(store, calls):
    """Runs each call and returns what of it reads a growing collection from end to end."""
    found = []
    recorder = next(listener for listener in store.client.options.event_listeners)
    for method, call in calls.items():
        recorder.commands.clear()
        call(store)
        for name, command in list(recorder.commands):
            collection = command.get(name) if isinstance(command.get(name), str) else None
            if collection in NOT_GROWING:
                continue
            if name == "findAndModify":
                found.append(f"{method}: findAndModify on {collection}")
                continue
            for collection, query, limited in _filters(name, command):
                if collection in NOT_GROWING or (not query and not limited) \
                        or _by_id_first(query):
                    continue
                plan = store.db.command("explain", {"find": collection, "filter": query},
                                        verbosity="queryPlanner")
                if "COLLSCAN" in str(plan["queryPlanner"]["winningPlan"]) \
                        and not {method, f"{method}: {name}"} & OPERATOR_WALKS:
                    found.append(f"{method}: {name} on {collection} by {sorted(query)}")
    return found


def named_queries(store_class):
    return {name for name in dir(store_class)
            if not name.startswith("_") and callable(getattr(store_class, name))
            and name not in NOT_NAMED_QUERIES}


def open_store(store_class):
    store = store_class(f"plans_{store_class.__name__.lower()}", "", ":memory:")
    store.ensure_indexes()
    return store


def in_transaction(work):
    return lambda store: store.in_transaction(lambda session: work(store, session))


class Cipher:
    keys = {"k1": None, "k2": None}
    current_id = "k2"

    def decrypt(self, sealed, context):
        return sealed["value"]

    def encrypt(self, value, context):
        return {"kid": "k2", "value": value}


DOCUMENT_STORE = {
    "page": lambda s: s.page("things", after="a", limit=10),
    "apply_once": lambda s: s.apply_once("event-1", lambda session: None),
    "count_up": lambda s: s.count_up("counters", "things", "n"),
    "change_by_id": lambda s: s.change_by_id("things", "a", lambda d: True, {"$set": {"x": 1}}),
    "done_request": lambda s: s.done_request("request-1"),
    # a request done once: its writes and its sealed answer in one transaction
    "in_request_transaction": lambda s: s.in_request_transaction(
        "r-2", lambda: None, lambda answer: "sealed",
        lambda done: done),
    "in_request_steps": lambda s: s.in_request_steps(
        "r-3", lambda: None, lambda answer: "sealed", lambda done: done),
    "replace_if_newer": lambda s: s.replace_if_newer("things", {"_id": "a", "v": 2}, "v"),
    "reencrypt": lambda s: (s["things"].create_index("secret.kid"),
                            s.reencrypt("things", "secret", Cipher(), 10)),
}

DECLARATION = {
    "save_municipality": lambda s: s.save_municipality({"_id": "GM0363", "name": "A"}),
    "municipality": lambda s: s.municipality("GM0363"),
    "knows_municipality": lambda s: s.knows_municipality("GM0363"),
    "settings_of": lambda s: s.settings_of("GM0363"),
    "save_settings": lambda s: s.save_settings({"_id": "GM0363"}),
    "next_reference_number": lambda s: s.next_reference_number(2026),
    "insert": in_transaction(lambda s, session: s.insert(
        {"_id": "d1", "reference": "MZ-2026-1", "status": "REQUESTED", "caregiver_key": "k",
         "created_at": NOW, "municipality_code": "GM0363", "verification_hash": "h",
         "active_key": "a", "personal": {"kid": "k1", "value": "x"}, "history": []}, session)),
    "find_by_id": lambda s: s.find_by_id("d1"),
    "find_by_reference": lambda s: s.find_by_reference("MZ-2026-1"),
    "find_by_ids": lambda s: s.find_by_ids(["d1", "d2"]),
    "waiting_per_municipality": lambda s: s.waiting_per_municipality(NOW - timedelta(days=56)),
    "record_reads": lambda s: s.record_reads([{"caregiver_key": "k", "at": NOW}]),
    "reads_of": lambda s: s.reads_of("k"),
    "owned_by": lambda s: s.owned_by("k"),
    "find_for_check": lambda s: s.find_for_check("MZ-2026-1"),
    "active_reference": lambda s: s.active_reference("a"),
    "page_of_municipality": lambda s: s.page_of_municipality("GM0363", "ISSUED", "MZ-1", 20),
    "due_for_expiry": lambda s: s.due_for_expiry("2026-03-01", 100),
    "change_if_status": in_transaction(lambda s, session: s.change_if_status(
        "d1", "REQUESTED", {"status": "ISSUED"}, {"at": NOW}, session=session)),
    "replace_code": lambda s: s.replace_code("d1", "h", {"verification_hash": "h2"}, {}),
    "sealed_with": lambda s: s.sealed_with("personal", ["k1"], 10),
    "reseal": lambda s: s.reseal("d1", "personal", {"kid": "k1"}, {"kid": "k2"}),
    "count_sealed_with": lambda s: s.count_sealed_with("personal", ["k1"]),
    "unknown_key_ids": lambda s: s.unknown_key_ids("personal", ["k1", "k2"]),
    "count_check_failure": lambda s: s.count_check_failure("partner:x", NOW - timedelta(hours=1),
                                                           NOW),
    "windows_at_limit": lambda s: s.windows_at_limit(NOW - timedelta(hours=1), 10),
    # what the service re-encrypts with it: the reader of each read of personal data
    "reencrypt": lambda s: s.reencrypt("personal_data_reads", "reader", Cipher(), 10),
}


def _order_change():
    return OrderChange("o1", "REQUESTED", 0, {"status": "ALLOCATED"}, {"at": NOW}, None, 0, "")


CAMPAIGN = {
    "put_municipality": lambda s: s.put_municipality({"_id": "GM0363", "name": "A"}),
    "municipality": lambda s: s.municipality("GM0363"),
    "municipalities": lambda s: s.municipalities(["GM0363"]),
    "project_support_point": lambda s: s.project_support_point(
        {"_id": "p1", "version": 1, "active": True, "serves_municipality_codes": ["GM0363"]}),
    "support_point": lambda s: s.support_point("p1"),
    "point_ids_serving": lambda s: s.point_ids_serving(["GM0363"]),
    "points_serving_each": lambda s: s.points_serving_each(["GM0363"]),
    "stock": lambda s: s.stock(),
    "add_print_run": in_transaction(lambda s, session: s.add_print_run(
        {"_id": "run-1", "quantity": 10}, session)),
    "place_order": in_transaction(lambda s, session: s.place_order(
        {"_id": "o1", "status": "REQUESTED", "quantity_allocated": 0, "created_at": NOW,
         "municipality_code": "GM0363", "history": []},
        {"_id": "o1", "status": "ALLOCATED", "quantity_allocated": 1000, "created_at": NOW,
         "municipality_code": "GM0363", "history": []}, session)),
    "order": lambda s: s.order("o1"),
    "orders": lambda s: s.orders("GM0363"),
    "change_order": in_transaction(lambda s, session: s.change_order(_order_change(), session)),
    "round_input": in_transaction(lambda s, session: s.round_input(session)),
    "save_round": in_transaction(lambda s, session: s.save_round(
        {"_id": "round-1", "allocated": 0}, [], 0, session)),
    "insert_campaign": in_transaction(lambda s, session: s.insert_campaign(
        {"_id": "c1", "launched": False, "created_at": NOW, "ends_on": "2026-12-31"}, session)),
    "campaign": lambda s: s.campaign("c1"),
    "campaigns": lambda s: (s.campaigns(), s.campaigns(including="GM0363")),
    "mark_launched": lambda s: s.mark_launched("c1", NOW),
    "distributions_to": lambda s: s.distributions_to("p1"),
    "mark_launch_announced": in_transaction(lambda s, session: s.mark_launch_announced(
        "c1", session)),
    "add_opt_out": in_transaction(lambda s, session: s.add_opt_out("c1", "GM0363", session)),
    "running_campaigns": lambda s: s.running_campaigns("2026-03-01"),
    "distributed_point_ids": lambda s: s.distributed_point_ids("c1"),
    "record_distributions": lambda s: s.record_distributions(
        [{"_id": "x1", "campaign_id": "c1", "support_point_id": "p1"}]),
    "record_distribution": lambda s: s.record_distribution(
        {"_id": "x2", "campaign_id": "c1", "support_point_id": "p2"}),
    "reached": lambda s: s.reached(["c1"]),
}

REGISTRY = {
    "stored_as": lambda s: s.stored_as({"_id": "GM0363", "name": "A"}),
    "save_municipality": in_transaction(lambda s, session: s.save_municipality(
        {"_id": "GM0363", "name": "A"}, session)),
    "municipality_codes": lambda s: s.municipality_codes(["GM0363"]),
    "municipalities": lambda s: s.municipalities(),
    "municipality": lambda s: s.municipality("GM0363"),
    "pc4_area": lambda s: s.pc4_area("1012"),
    "pc4_areas": lambda s: s.pc4_areas(["1012"]),
    "save_pc4_areas": in_transaction(lambda s, session: s.save_pc4_areas(
        [{"_id": "1012", "municipality_code": "GM0363"}], session)),
    "all_pc4_areas": lambda s: list(s.all_pc4_areas()),
    "support_point": lambda s: s.support_point("p1"),
    "support_point_by_import_key": lambda s: s.support_point_by_import_key("key"),
    "all_support_points": lambda s: list(s.all_support_points()),
    "save_support_point": in_transaction(lambda s, session: (
        s.save_support_point({"_id": "p1", "version": 1}, {"support_point_id": "p1", "at": NOW},
                             session),
        s.save_support_point({"_id": "p1", "version": 2}, {"support_point_id": "p1", "at": NOW},
                             session, replaces_version=1))),
    "history_of": lambda s: s.history_of("p1"),
    "bump_generation": lambda s: s.bump_generation("support_points"),
    "generations": lambda s: s.generations(),
}


# A claim id as the fund makes them: an ObjectId of the moment the claim came in.
CLAIM_ID = f"{int(NOW.timestamp()):08x}0000000000000001"
BATCH_ID = f"{int(NOW.timestamp()):08x}00000000000000b1"
RESERVED = {"first": CLAIM_ID, "last": CLAIM_ID}


def _step(before, after, action):
    return {"from": before, "to": after, "action": action, "at": NOW,
            "by": {"role": "fund", "sub": "fund-1"}, "reason": None}


def _legacy_file(s):
    """A batch's file as an earlier release stored it: plain, in GridFS."""
    file_id = gridfs.GridFSBucket(s.db, bucket_name="payout_files").upload_from_stream(
        "batch.xml", b"<Document/>")
    s["payout_batches"].update_one({"_id": BATCH_ID}, {"$set": {"file_id": file_id}})
    return file_id


# In this order: the declaration, the counters and the claim first, then the batch that
# reserves the claim, stores a part of its file (re-encrypted with the claim's account),
# is filed, released and pays it, then the plain file of an earlier release.
TRAVEL_COSTS = {
    "save_declaration": in_transaction(lambda s, session: s.save_declaration(
        {"_id": "MZ-2026-1", "status": "ISSUED", "valid_until": "2026-12-31",
         "changed_at": NOW}, session)),
    "declaration": lambda s: s.declaration("MZ-2026-1"),
    "touch_declaration": in_transaction(lambda s, session: s.touch_declaration(
        "MZ-2026-1", NOW, session)),
    "save_pc4_areas": in_transaction(lambda s, session: s.save_pc4_areas(
        [{"_id": "1012", "lat": 52.37, "lon": 4.89, "changed_at": NOW}], session)),
    "pc4_area_count": lambda s: s.pc4_area_count(),
    "centroids": lambda s: (s.centroids(), s.centroids(["1012"])),
    "claimed_trips": lambda s: s.claimed_trips({"k:2026-02-27:1012:1017"}),
    "ensure_grant_counters": lambda s: s.ensure_grant_counters("k", [2026]),
    "granted": lambda s: s.granted("k", [2026], None),
    "add_grant": in_transaction(lambda s, session: s.add_grant("k", 2026, 1863, 0, session)),
    "release_grants": in_transaction(lambda s, session: s.release_grants(
        "k", {2026: 1863}, session)),
    "insert_claim": in_transaction(lambda s, session: s.insert_claim(
        {"_id": CLAIM_ID, "status": "SUBMITTED", "caregiver_key": "k",
         "declaration_reference": "MZ-2026-1", "batch_id": None, "trips": [],
         "amount_cents": 1863, "grants": {"2026": 1863}, "account": {"kid": "k1", "value": "x"},
         "submitted_at": NOW, "updated_at": NOW, "history": []}, session)),
    "record_trips": in_transaction(lambda s, session: s.record_trips(
        ["k:2026-02-27:1012:1017"], CLAIM_ID, session)),
    "claim": lambda s: s.claim(CLAIM_ID),
    "claims_of": lambda s: s.claims_of("k"),
    "claims_page": lambda s: (s.claims_page("SUBMITTED", 20, None),
                              s.claims_page("SUBMITTED", 20, CLAIM_ID),
                              s.claims_page(None, 20, None), s.claims_page(None, 20, CLAIM_ID)),
    "change_claim": in_transaction(lambda s, session: s.change_claim(
        CLAIM_ID, "SUBMITTED", "APPROVED", _step("SUBMITTED", "APPROVED", "approve"), session)),
    "open_claims_on": in_transaction(lambda s, session: s.open_claims_on("MZ-2026-1", session)),
    "insert_batch": lambda s: s.insert_batch(
        {"_id": BATCH_ID, "status": "PREPARING", "schema": "pain.001.001.09",
         "created_at": NOW, "lease_until": NOW + timedelta(minutes=30), "claim_count": 0,
         "total_cents": 0, "history": []}),
    "batch": lambda s: s.batch(BATCH_ID),
    "free_claim_ids": lambda s: list(s.free_claim_ids(1000)),
    "reserve_approved_claims": lambda s: s.reserve_approved_claims(BATCH_ID, 1000),
    "reserved_amounts": lambda s: list(s.reserved_amounts(BATCH_ID, RESERVED)),
    "reserved_claims": lambda s: list(s.reserved_claims(BATCH_ID, RESERVED)),
    "save_file_part": lambda s: s.save_file_part(
        {"_id": f"{BATCH_ID}:0", "batch_id": BATCH_ID, "part": 0,
         "sealed": {"kid": "k1", "value": "<Document/>"}}),
    "file_part": lambda s: s.file_part(BATCH_ID, 0),
    # as the service re-encrypts: the claims' accounts, then the files' parts
    "reencrypt": lambda s: (s.reencrypt("claims", "account", Cipher(), 10),
                            s.reencrypt("payout_file_parts", "sealed", Cipher(), 1)),
    "change_batch": lambda s: (
        s.change_batch(BATCH_ID, "PREPARING", "AWAITING_RELEASE",
                       _step("PREPARING", "AWAITING_RELEASE", "file"),
                       changes={"claim_count": 1, "total_cents": 1863, "chunks": [RESERVED]},
                       unset=("lease_until",), lease_until=NOW + timedelta(minutes=30)),
        s.change_batch(BATCH_ID, "AWAITING_RELEASE", "RELEASING",
                       _step("AWAITING_RELEASE", "RELEASING", "release"),
                       changes={"lease_until": NOW - timedelta(minutes=1)})),
    "batches_page": lambda s: (s.batches_page(20, None), s.batches_page(20, s.batch(BATCH_ID))),
    "stalled_batches": lambda s: s.stalled_batches(NOW),
    "extend_lease": lambda s: s.extend_lease(s.batch(BATCH_ID), NOW + timedelta(minutes=30)),
    "pay_chunk": in_transaction(lambda s, session: s.pay_chunk(
        BATCH_ID, RESERVED, _step("APPROVED", "PAID", "pay"), session)),
    "paid_claims": lambda s: s.paid_claims("k", NOW - timedelta(days=1), NOW + timedelta(days=1)),
    "release_claims": lambda s: s.release_claims(BATCH_ID),
    "batches_with_plain_files": lambda s: (_legacy_file(s), s.batches_with_plain_files()),
    "read_legacy_file": lambda s: s.read_legacy_file(s.batch(BATCH_ID)["file_id"]),
    "replace_legacy_file": lambda s: s.replace_legacy_file(
        BATCH_ID, s.batch(BATCH_ID)["file_id"],
        [{"_id": f"{BATCH_ID}:0", "batch_id": BATCH_ID, "part": 0,
          "sealed": {"kid": "k2", "value": "<Document/>"}}], 11),
    "delete_file_parts": lambda s: s.delete_file_parts(BATCH_ID),
}

MESSAGE_ID = "declaration.issued:MZ-2026-1"
MAIL_ID = f"{MESSAGE_ID}.mail"

# In this order: the message with its e-mail first, which is then claimed, tried again,
# parked, re-encrypted and sent; then the declaration whose expiry notice is due.
NOTIFICATIONS = {
    "save_message": in_transaction(lambda s, session: s.save_message(
        {"_id": MESSAGE_ID, "owner": "k", "kind": "declaration", "about": "MZ-2026-1",
         "sent_at": NOW, "text": {"kid": "k1", "value": "x"}},
        {"_id": MAIL_ID, "message_id": MESSAGE_ID, "owner": "k", "status": "PENDING",
         "to": {"kid": "k1", "value": "x"}, "attempts": 0, "due_at": NOW,
         "claimed_until": NOW, "created_at": NOW}, session)),
    "has_message": lambda s: s.has_message(MESSAGE_ID),
    "message": lambda s: s.message(MESSAGE_ID),
    "messages_of": lambda s: s.messages_of("k", 50),
    "due_mails": lambda s: s.due_mails(NOW, 20),
    "claim_mail": lambda s: s.claim_mail(MAIL_ID, NOW, 60),
    "mail_retried": lambda s: s.mail_retried(MAIL_ID, 1, NOW + timedelta(minutes=1), "refused"),
    "mail_counts": lambda s: s.mail_counts(),
    "mail_parked": lambda s: s.mail_parked(MAIL_ID, 2, NOW, "no such address"),
    "parked_mails": lambda s: s.parked_mails(),
    # as the service re-encrypts: the messages' texts and the e-mails' addresses
    "reencrypt": lambda s: (s.reencrypt("messages", "text", Cipher(), 10),
                            s.reencrypt("mail_queue", "to", Cipher(), 10)),
    "mail_sent": lambda s: s.mail_sent(MAIL_ID, NOW),
    "save_declaration": in_transaction(lambda s, session: s.save_declaration(
        {"_id": "MZ-2026-1", "status": "ISSUED", "valid_until": "2026-03-31",
         "changed_at": NOW}, session)),
    "due_for_expiry_notice": lambda s: s.due_for_expiry_notice("2026-04-01", 50),
    "mark_notice_sent": in_transaction(lambda s, session: s.mark_notice_sent(
        "MZ-2026-1", session)),
}

# In this order: a key claimed, held longer, finished; another claimed and released; a
# web session opened, seen and ended.
GATEWAY = {
    "claim": lambda s: (s.claim("r1", "b1", NOW, NOW + timedelta(seconds=60)),
                        s.claim("r2", "b2", NOW, NOW + timedelta(seconds=60)),
                        s.claim("r2", "b2", NOW + timedelta(seconds=90),
                                NOW + timedelta(seconds=150))),
    "extend": lambda s: s.extend("r1", NOW + timedelta(seconds=120)),
    "finish": lambda s: s.finish("r1", {"kid": "k1", "value": "answer"}),
    "release": lambda s: s.release("r2"),
    "open_session": lambda s: s.open_session("w1", NOW.timestamp()),
    "touch_session": lambda s: s.touch_session("w1", NOW.timestamp() - 1800,
                                               NOW.timestamp() + 1),
    "end_session": lambda s: s.end_session("w1"),
}


def with_common(calls):
    """The common store's rows and the store's own; a row of its own for a common method
    runs in its own place, after the documents it needs."""
    return {**{method: call for method, call in DOCUMENT_STORE.items() if method not in calls},
            **calls}


@pytest.mark.parametrize("store_class, calls", [
    (DocumentStore, DOCUMENT_STORE), (DeclarationStore, with_common(DECLARATION)),
    (CampaignStore, with_common(CAMPAIGN)), (RegistryStore, with_common(REGISTRY)),
    (TravelCostsStore, with_common(TRAVEL_COSTS)),
    (NotificationsStore, with_common(NOTIFICATIONS)), (GatewayStore, with_common(GATEWAY)),
], ids=["common", "declaration", "campaign", "registry", "travel_costs", "notifications",
        "gateway"])
def test_no_named_query_scans_a_growing_collection(recorded, store_class, calls):
    assert named_queries(store_class) == set(calls), "every named query is called here"
    store = open_store(store_class)
    try:
        assert scans(store, calls) == []
    finally:
        store.close()


def _entry(entry_id):
    return {"_id": entry_id, "created_at": NOW, "claimed_until": NOW + timedelta(seconds=10),
            "envelope": {"event_id": entry_id}}


# In this order: the entries are written first, so that each later write finds them.
OUTBOX_STORE = {
    "add_entries": lambda s: s.add_entries([_entry("e1"), _entry("e2"), _entry("e3")], None),
    "claim_entries": lambda s: s.claim_entries(["e1", "e2"], lambda entry: True,
                                               NOW + timedelta(seconds=15), "relay-1"),
    "claim_for_later": lambda s: s.claim_for_later(["e2"], NOW + timedelta(seconds=5),
                                                   "unroutable"),
    "remove_entries": lambda s: s.remove_entries(["e1"]),
    "due_before": lambda s: s.due_before(NOW),
    "due_within": lambda s: s.due_within(NOW, NOW + timedelta(seconds=1)),
    "due_after": lambda s: s.due_after(NOW),
    "claim_times": lambda s: s.claim_times(NOW + timedelta(days=1)),
    "first_due_within": lambda s: s.first_due_within(NOW, NOW + timedelta(seconds=1)),
    "take_lease": lambda s: (s.take_lease("relay-1", NOW, NOW + timedelta(seconds=15)),
                             s.take_lease("relay-2", NOW, NOW + timedelta(seconds=15))),
}


def test_no_named_query_of_the_outbox_scans_it(recorded):
    """The outbox grows with every event that waits (60,000 when the broker was away)."""
    assert named_queries(OutboxStore) == set(OUTBOX_STORE), "every named query is called here"
    store = open_store(DocumentStore)
    try:
        outbox = OutboxStore(store)
        outbox.ensure_indexes()
        assert scans(outbox, OUTBOX_STORE) == []
        assert sorted(entry["_id"] for entry in outbox.due_after(NOW)) == ["e2", "e3"]
    finally:
        store.close()


def test_the_check_finds_a_scan_and_a_find_one_and_update(recorded):
    store = open_store(DocumentStore)
    try:
        found = scans(store, {
            "by_unindexed_field": lambda s: s["claims"].find_one({"status": "OPEN"}),
            "by_status_and_id": lambda s: s["claims"].update_one(
                {"status": "OPEN", "_id": "c1"}, {"$set": {"status": "PAID"}}),
            "by_id_and_either": lambda s: s["claims"].update_one(
                {"_id": "c1", "$or": [{"status": "OPEN"}, {"status": "HELD"}]},
                {"$set": {"status": "PAID"}}),
            "find_one_and_update": lambda s: s["claims"].find_one_and_update(
                {"_id": "c1"}, {"$set": {"status": "PAID"}}),
            "by_id": lambda s: s["claims"].update_one({"_id": "c1"}, {"$set": {"x": 1}}),
            "by_id_and_status": lambda s: s["claims"].update_one(
                {"_id": "c1", "status": "OPEN"}, {"$set": {"status": "PAID"}}),
        })
        assert found == ["by_unindexed_field: find on claims by ['status']",
                         "by_status_and_id: update on claims by ['_id', 'status']",
                         "by_id_and_either: update on claims by ['$or', '_id']",
                         "find_one_and_update: findAndModify on claims"]
    finally:
        store.close()


class ConfirmingPublisher:
    """Stands in for the broker: confirms every event."""

    def publish_many(self, envelopes, routing_key=None):
        return {envelope["event_id"] for envelope in envelopes}


def test_the_outbox_relay_reads_and_writes_its_entries_only_by_index(recorded):
    """The relay's timer, a worker's relay and the health figure: no read of the whole
    outbox, except the one count when a relay first starts."""
    from common.outbox import Outbox
    store = open_store(DocumentStore)
    OutboxStore(store).ensure_indexes()
    outbox = Outbox(store, "registry", {"AMQP_URI": "amqp://guest:guest@127.0.0.1:1//"})
    outbox.publisher = ConfirmingPublisher()
    payload = {"code": "GM0363", "name": "Amsterdam", "province": "Noord-Holland",
               "population": 1}

    def record(s):
        return [str(envelope.event_id) for envelope in s.in_transaction(
            lambda session: outbox.add_many(
                session, [("municipality.imported", payload)] * 3, "corr"))]

    try:
        record(store)
        outbox.relay()                      # starts: the one count of the whole outbox
        assert scans(store, {
            "record": record,
            "relay_own": lambda s: outbox.relay_own(record(s)),
            "relay": lambda s: (record(s), outbox.relay()),
            "pending": lambda s: outbox.pending(),
        }) == []
        assert outbox.pending() == 0
    finally:
        store.close()
