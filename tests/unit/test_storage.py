"""The storage layer on the embedded document store."""
import threading
import time
import uuid

from common.storage import EMBEDDED_TRANSACTIONS_AT_ONCE, DocumentStore, EmbeddedServer


def test_data_survives_a_restart_of_the_embedded_server(tmp_path):
    store = DocumentStore("restart_probe", "", str(tmp_path))
    store["things"].insert_one({"_id": "a", "value": 42})
    store.close()

    reopened = DocumentStore("restart_probe", "", str(tmp_path))
    try:
        assert reopened["things"].find_one({"_id": "a"})["value"] == 42
    finally:
        reopened.close()


def test_the_embedded_server_stops_at_once_under_eventlet():
    """Every service process stops its store on SIGTERM; its accept thread is a green one
    there (the tests run monkey-patched as the services do), and was left waiting for two
    seconds."""
    store = DocumentStore("stop_probe", "", ":memory:")
    store["things"].insert_one({"_id": "a"})
    started = time.monotonic()
    store.close()
    assert time.monotonic() - started < 1


def test_apply_once_runs_the_work_for_the_first_delivery_only():
    store = DocumentStore("inbox_probe", "", ":memory:")
    try:
        event_id = uuid.uuid4()

        def count(session):
            store["counter"].update_one({"_id": "c"}, {"$inc": {"n": 1}}, upsert=True,
                                        session=session)

        assert store.apply_once(event_id, count) is True
        assert store.apply_once(event_id, count) is False
        assert store["counter"].find_one({"_id": "c"})["n"] == 1
    finally:
        store.close()


def test_a_failing_handler_leaves_no_inbox_entry_so_a_retry_runs_again():
    store = DocumentStore("inbox_failure", "", ":memory:")
    try:
        event_id = uuid.uuid4()

        def fail(session):
            store["things"].insert_one({"_id": "half"}, session=session)
            raise RuntimeError("boom")

        try:
            store.apply_once(event_id, fail)
        except RuntimeError:
            pass
        assert store["things"].find_one({"_id": "half"}) is None
        assert store.apply_once(event_id, lambda s: None) is True
    finally:
        store.close()


def test_replace_if_newer_keeps_the_newest_copy():
    store = DocumentStore("projection_probe", "", ":memory:")
    try:
        assert store.replace_if_newer("p", {"_id": "x", "version": 2, "v": "new"}, "version")
        assert not store.replace_if_newer("p", {"_id": "x", "version": 1, "v": "old"}, "version")
        assert store["p"].find_one({"_id": "x"})["v"] == "new"
    finally:
        store.close()


def test_the_registry_moves_history_stored_before_the_lifecycle_kit_to_its_shape():
    from datetime import datetime, timezone

    from services.registry.storage import HISTORY, RegistryStore

    store = RegistryStore("registry_history_probe", "", ":memory:")
    try:
        at = datetime(2026, 1, 5, 10, 0, tzinfo=timezone.utc)
        store[HISTORY].insert_many([
            {"_id": "h1", "support_point_id": "p1", "version": 1, "at": at,
             "change": "registered", "actor": {"role": "admin", "sub": "a1"}, "changes": [],
             "reason": None},
            {"_id": "h2", "support_point_id": "p1", "version": 2, "at": at,
             "change": "deactivated", "actor": {"role": "municipality", "sub": "m1"},
             "changes": [], "reason": "closed"}])
        store.migrate()
        store.migrate()   # every replica runs it: a second run changes nothing
        moved = {entry["_id"]: entry for entry in store[HISTORY].find({})}
        assert (moved["h1"]["from"], moved["h1"]["to"], moved["h1"]["action"]) == (
            None, "active", "register")
        assert (moved["h2"]["from"], moved["h2"]["to"], moved["h2"]["action"]) == (
            "active", "inactive", "deactivate")
        assert moved["h2"]["by"] == {"role": "municipality", "sub": "m1"}
        assert all("change" not in e and "actor" not in e for e in moved.values())
        assert [h["action"] for h in store.history_of("p1")] == ["register", "deactivate"]
    finally:
        store.close()


def test_the_waiting_requests_per_municipality_count_the_overdue_ones_in_one_pass():
    from datetime import datetime, timedelta, timezone

    from services.declaration.storage import DeclarationStore
    store = DeclarationStore("waiting_probe", "", ":memory:")
    try:
        store.ensure_indexes()
        now = datetime(2026, 6, 1, tzinfo=timezone.utc)
        for number, (code, status, days_ago) in enumerate([
                ("GM0363", "REQUESTED", 70), ("GM0363", "REQUESTED", 3), ("GM0363", "ISSUED", 90),
                ("GM0599", "REQUESTED", 60), ("GM0599", "REQUESTED", 57)]):
            store.in_transaction(lambda session, n=number, c=code, s=status, d=days_ago:
                                 store.insert({"_id": f"d{n}", "reference": f"MZ-{n}",
                                               "municipality_code": c, "status": s,
                                               "created_at": now - timedelta(days=d)}, session))
        found = store.waiting_per_municipality(now - timedelta(days=56))
        assert {code: (entry["waiting"], entry["overdue"]) for code, entry in found.items()} \
            == {"GM0363": (2, 1), "GM0599": (2, 2)}
        assert found["GM0363"]["oldest"] == now - timedelta(days=70)
    finally:
        store.close()


def test_of_two_changes_by_id_at_once_one_applies_and_the_other_finds_its_condition_gone():
    import threading

    store = DocumentStore("change_by_id_probe", "", ":memory:")
    try:
        store["orders"].insert_one({"_id": "o1", "status": "REQUESTED", "steps": 0})
        first_read, second_done = threading.Event(), threading.Event()
        answers = {}

        def slow_holds(order):      # the first worker reads, then waits for the second
            first_read.set()
            second_done.wait(10)
            return order["status"] == "REQUESTED"

        def first():
            answers["first"] = store.in_transaction(lambda session: store.change_by_id(
                "orders", "o1", slow_holds,
                {"$set": {"status": "CANCELLED"}, "$inc": {"steps": 1}}, session))

        worker = threading.Thread(target=first)
        worker.start()
        assert first_read.wait(10)
        answers["second"] = store.change_by_id(
            "orders", "o1", lambda order: order["status"] == "REQUESTED",
            {"$set": {"status": "ALLOCATED"}, "$inc": {"steps": 1}})
        second_done.set()
        worker.join(20)
        assert answers["second"]["status"] == "ALLOCATED"
        assert answers["first"] is None      # its write conflicted; run again, it read ALLOCATED
        assert store["orders"].find_one({"_id": "o1"}) == {"_id": "o1", "status": "ALLOCATED",
                                                          "steps": 1}
    finally:
        store.close()


def test_a_counter_used_first_by_several_processes_at_once_counts_each_once(tmp_path):
    """Replicas sharing the store (the store as a process of its own) take the first
    reference number of a year at the same moment; the embedded store answered one of two
    concurrent upserts with nothing, and that request failed."""
    server = EmbeddedServer(str(tmp_path))
    stores = [DocumentStore("counter_race", server.uri) for _ in range(4)]
    taken, failures = {}, []

    def take(store, counter_id):
        try:
            taken.setdefault(counter_id, []).append(store.count_up("counters", counter_id, "n"))
        except Exception as error:  # noqa: BLE001 - the failure is what is asserted
            failures.append(repr(error))

    try:
        for counter_id in [f"reference-{year}" for year in range(3000, 3012)]:
            threads = [threading.Thread(target=take, args=(store, counter_id))
                       for store in stores]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        assert failures == []
        assert all(sorted(values) == [1, 2, 3, 4] for values in taken.values()), taken
    finally:
        for store in stores:
            store.close()
        server.stop()


def test_the_embedded_store_runs_a_few_transactions_at_once_and_a_nested_one_waits_for_none(
        tmp_path):
    """With many writers at once the embedded store falls to a tenth of its rate and stays
    there (bench_store_growth); a process keeps to EMBEDDED_TRANSACTIONS_AT_ONCE. A
    transaction begun inside another of the same thread takes no second slot, else a
    thread would wait for itself."""
    store = DocumentStore("slots", "", str(tmp_path))
    running, most, lock = [0], [0], threading.Lock()

    def work(session):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.02)
        # a transaction of its own inside this one: it must not wait for a slot
        store.in_own_transaction(lambda inner: store["things"].insert_one(
            {"_id": uuid.uuid4().hex}, session=inner))
        with lock:
            running[0] -= 1

    try:
        threads = [threading.Thread(target=store.in_transaction, args=(work,))
                   for _ in range(3 * EMBEDDED_TRANSACTIONS_AT_ONCE)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert not any(thread.is_alive() for thread in threads)
        assert most[0] == EMBEDDED_TRANSACTIONS_AT_ONCE
        assert store["things"].count_documents({}) == 3 * EMBEDDED_TRANSACTIONS_AT_ONCE
    finally:
        store.close()
