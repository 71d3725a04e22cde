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
year). A method that returns
a whole collection (no filter, no limit) reads what it answers and is not a scan to avoid.

Left out for now, each with writes by ``_id`` and a condition (which ``explain`` reports as a
scan, though the store's executor takes the ``_id`` clause first) or a filter with a field
beside its index: the travel-cost fund's store (its payout path is being rewritten), the
notifications store (``claim_mail``, ``mark_notice_sent``, ``due_mails``,
``due_for_expiry_notice``) and the gateway's (idempotency keys, ``touch_session``).
``migrate`` runs once per release, not per request."""
import functools
from datetime import datetime, timedelta, timezone

import pymongo
import pytest
from pymongo import monitoring

import common.storage
from common.storage import DocumentStore, OutboxStore
from services.campaign.domain import OrderChange
from services.campaign.storage import CampaignStore
from services.declaration.storage import DeclarationStore
from services.registry.storage import RegistryStore

NOT_GROWING = {"counters", "generations", "stock", "municipalities", "municipality_settings",
               "pc4_areas", "campaigns"}
NOW = datetime(2026, 3, 1, 12, tzinfo=timezone.utc)
# Operator walks, once per batch of an operator's command, never per request: republishing a
# collection in pages of its ids (the embedded store has no index walk by _id range), and
# the count of values sealed with keys no longer configured ($nin, which no index serves).
OPERATOR_WALKS = {"page", "unknown_key_ids", "reencrypt: distinct", "reencrypt: aggregate"}
# Methods that are not queries: the store's own life cycle and helpers for a transaction.
NOT_NAMED_QUERIES = {"ensure_indexes", "migrate", "close", "ping", "in_transaction",
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
                if collection in NOT_GROWING or (not query and not limited):
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


@pytest.mark.parametrize("store_class, calls", [
    (DocumentStore, DOCUMENT_STORE), (DeclarationStore, {**DOCUMENT_STORE, **DECLARATION}),
    (CampaignStore, {**DOCUMENT_STORE, **CAMPAIGN}), (RegistryStore, {**DOCUMENT_STORE, **REGISTRY}),
], ids=["common", "declaration", "campaign", "registry"])
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
            "by_id_and_status": lambda s: s["claims"].update_one(
                {"_id": "c1", "status": "OPEN"}, {"$set": {"status": "PAID"}}),
            "find_one_and_update": lambda s: s["claims"].find_one_and_update(
                {"_id": "c1"}, {"$set": {"status": "PAID"}}),
            "by_id": lambda s: s["claims"].update_one({"_id": "c1"}, {"$set": {"x": 1}}),
        })
        assert found == ["by_unindexed_field: find on claims by ['status']",
                         "by_id_and_status: update on claims by ['_id', 'status']",
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
