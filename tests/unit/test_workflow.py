"""The lifecycle kit: a table keyed by (state, action), the audit entry and the history view."""
from datetime import datetime, timezone

import pytest

from common.errors import BadUserInput, Conflict, Forbidden
from common.workflow import (Transition, Workflow, actor_trace, audit_entry, cannot_be,
                             history_view)

CLERK = {"role": "clerk", "sub": "c-1", "municipality": "GM0363", "name": "never stored"}
BOSS = {"role": "boss", "sub": "b-1"}

TABLE = Workflow(
    Transition(None, "open", "OPEN", ("clerk",), "thing.opened"),
    Transition("OPEN", "close", "CLOSED", ("clerk", "boss"), "thing.closed"),
    Transition("OPEN", "park", "PARKED", ("boss",), "thing.parked", needs=("reason",)),
    # one action from two states, each with its own needs
    Transition("PARKED", "close", "CLOSED", ("boss",), "thing.closed", needs=("reason",)),
    Transition("CLOSED", "tick", "CLOSED", ("system",)),
    refused=lambda state, action: f"{state or 'new'} refuses {action}",
    forbidden="not yours", reason_missing=lambda t: f"reason: {t.action} needs one",
)


def test_a_step_is_found_by_state_and_action():
    assert TABLE.step("OPEN", "close").after == "CLOSED"
    assert TABLE.step("PARKED", "close").needs_reason
    assert not TABLE.step("OPEN", "close").needs_reason
    assert TABLE.step("CLOSED", "close") is None
    assert TABLE.transition(None, "open").event == "thing.opened"


def test_a_step_the_table_lacks_is_a_conflict_worded_by_the_service():
    with pytest.raises(Conflict, match="CLOSED refuses close"):
        TABLE.transition("CLOSED", "close")
    with pytest.raises(Conflict, match="new refuses close"):
        TABLE.take(None, "close", BOSS, "why")


def test_the_roles_of_an_action_are_those_of_each_state_it_starts_from():
    assert TABLE.roles("close") == ("clerk", "boss")
    TABLE.take("OPEN", "close", CLERK)
    with pytest.raises(Forbidden, match="not yours") as refused:
        TABLE.take("PARKED", "close", CLERK, "why")
    assert refused.value.code == "FORBIDDEN"
    TABLE.require_role("close", CLERK)      # some state lets a clerk close
    for nobody in (None, {}, {"role": "visitor"}):
        with pytest.raises(Forbidden):
            TABLE.require_role("close", nobody)


def test_take_checks_state_then_role_then_reason():
    with pytest.raises(Conflict):
        TABLE.take("CLOSED", "park", CLERK)           # both wrong: the state is named first
    with pytest.raises(Forbidden):
        TABLE.take("OPEN", "park", CLERK)             # no reason either: the role first
    with pytest.raises(BadUserInput, match="reason: park needs one") as missing:
        TABLE.take("OPEN", "park", BOSS, "   ")
    assert missing.value.field == "reason"
    assert TABLE.take("OPEN", "park", BOSS, " busy ").after == "PARKED"


def test_a_reason_is_tidied_and_checked_per_row_or_per_action():
    assert TABLE.reason(TABLE.step("OPEN", "park"), "  busy ") == "busy"
    assert TABLE.reason(TABLE.step("OPEN", "close"), "  ") is None
    # by the action's name: needed only when every row of it needs one
    with pytest.raises(BadUserInput):
        TABLE.reason("park", None)
    assert TABLE.reason("close", None) is None


def test_a_custom_forbidden_message_may_depend_on_the_action():
    table = Workflow(Transition(None, "make", "MADE", ("a",)),
                     forbidden=lambda action, actor: f"no {action} for {actor.get('role')}")
    with pytest.raises(Forbidden, match="no make for b"):
        table.take(None, "make", {"role": "b"})


def test_the_table_lists_what_it_holds():
    assert TABLE.actions() == ("open", "close", "park", "tick")
    assert TABLE.states() == ("OPEN", "CLOSED", "PARKED")
    assert TABLE.events() == ("thing.opened", "thing.closed", "thing.parked")
    assert [t.before for t in TABLE.rows("close")] == ["OPEN", "PARKED"]
    assert len(TABLE.rows()) == 5


def test_one_row_per_state_and_action():
    with pytest.raises(ValueError):
        Workflow(Transition("A", "go", "B", ("x",)), Transition("A", "go", "C", ("x",)))


def test_the_audit_entry_keeps_who_by_role_and_pseudonym_only():
    at = datetime(2026, 3, 1, 9, 30, tzinfo=timezone.utc)
    entry = audit_entry("OPEN", "PARKED", "park", CLERK, at, "busy", quantity=3)
    assert entry == {"from": "OPEN", "to": "PARKED", "action": "park", "at": at,
                     "by": {"role": "clerk", "sub": "c-1"}, "reason": "busy", "quantity": 3}
    wider = audit_entry(None, "OPEN", "open", CLERK, at, actor_fields=("role", "sub",
                                                                       "municipality"))
    assert wider["by"] == {"role": "clerk", "sub": "c-1", "municipality": "GM0363"}
    assert "never stored" not in repr(wider)
    assert actor_trace(None) == {"role": None, "sub": None}


def test_the_history_view_is_what_leaves_the_service():
    at = datetime(2026, 3, 1, 9, 30, tzinfo=timezone.utc)
    history = [audit_entry(None, "OPEN", "open", CLERK, at),
               audit_entry("OPEN", "PARKED", "park", BOSS, at, "busy", quantity=3)]
    assert history_view(history) == [
        {"from_status": None, "to_status": "OPEN", "action": "open",
         "at": "2026-03-01T09:30:00+00:00", "actor_role": "clerk", "reason": None},
        {"from_status": "OPEN", "to_status": "PARKED", "action": "park",
         "at": "2026-03-01T09:30:00+00:00", "actor_role": "boss", "reason": "busy"}]
    detailed = history_view(history, "quantity", subjects=True)
    assert [(h["quantity"], h["actor_sub"]) for h in detailed] == [(None, "c-1"), (3, "b-1")]
    assert history_view(None) == []


def test_every_event_a_service_table_records_is_in_the_catalogue():
    from common.events import CATALOGUE
    from services.campaign.domain import WORKFLOW as BAG_ORDERS
    from services.declaration.domain import LIFECYCLE as DECLARATIONS
    from services.registry.domain import WORKFLOW as SUPPORT_POINTS

    for table in (BAG_ORDERS, DECLARATIONS, SUPPORT_POINTS):
        assert table.events() and set(table.events()) <= set(CATALOGUE)


def test_the_usual_refusal_names_the_state_the_thing_and_the_step():
    refused = cannot_be("claim", {"pay": "paid"})
    assert refused("PAYOUT_PENDING", "pay") == "a payout pending claim cannot be paid"
    assert refused(None, "pay") == "a new claim cannot be paid"
    assert refused("SUBMITTED", "archive") == "a submitted claim cannot be archive"
    table = Workflow(Transition(None, "submit", "SUBMITTED", ("caregiver",)), refused=refused)
    with pytest.raises(Conflict) as refusal:
        table.transition("SUBMITTED", "pay")
    assert str(refusal.value) == "a submitted claim cannot be paid"
