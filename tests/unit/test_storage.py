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
