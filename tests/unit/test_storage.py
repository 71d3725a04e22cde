"""The storage layer on the embedded document store."""
import uuid

from common.storage import DocumentStore


def test_data_survives_a_restart_of_the_embedded_server(tmp_path):
    store = DocumentStore("restart_probe", "", str(tmp_path))
    store["things"].insert_one({"_id": "a", "value": 42})
    store.close()

    reopened = DocumentStore("restart_probe", "", str(tmp_path))
    try:
        assert reopened["things"].find_one({"_id": "a"})["value"] == 42
    finally:
        reopened.close()


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
