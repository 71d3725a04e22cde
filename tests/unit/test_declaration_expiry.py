"""The expiry timer's own run (no date given: today), on the embedded store."""
from datetime import date, timedelta

from nameko.extensions import ENTRYPOINT_EXTENSIONS_ATTR
from nameko.testing.services import worker_factory
from nameko.timer import Timer

from common import clock
from services.declaration.service import DeclarationService
from services.declaration.storage import DECLARATIONS


def issued(reference, valid_until):
    return {"_id": reference, "reference": reference, "status": "ISSUED",
            "municipality_code": "GM0363", "purposes": ["PARKING_PERMIT"], "owner": None,
            "active_key": f"key-{reference}", "valid_from": "2020-01-01",
            "valid_until": valid_until.isoformat(), "created_at": clock.now(), "history": []}


def test_expiry_runs_by_itself_every_minute():
    extensions = getattr(DeclarationService.expire_due_declarations, ENTRYPOINT_EXTENSIONS_ATTR)
    assert [e.interval for e in extensions if isinstance(e, Timer)] == [60]


def test_the_timer_expires_what_ended_before_today_and_publishes_it(declaration_store):
    store = declaration_store
    today = date.today()
    store[DECLARATIONS].insert_many([issued("ENDED", today - timedelta(days=1)),
                                     issued("LAST-DAY", today)])
    service = worker_factory(DeclarationService, store=store)
    service.expire_due_declarations()

    ended = store[DECLARATIONS].find_one({"_id": "ENDED"})
    assert ended["status"] == "EXPIRED" and "active_key" not in ended
    assert ended["history"][-1]["to"] == "EXPIRED" and ended["history"][-1]["by"]["role"] == "system"
    assert store[DECLARATIONS].find_one({"_id": "LAST-DAY"})["status"] == "ISSUED"
    (call,) = service.outbox.record.call_args_list
    assert call.args[1] == "declaration.expired" and call.args[2]["reference"] == "ENDED"
