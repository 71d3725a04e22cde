"""The lifecycle kit: a workflow as one table, the audit trail a step leaves, and the view of
that trail that leaves a service.

Every service writes each lifecycle it keeps (a declaration, a support point, a bag order, a
travel claim, a payout batch) as one ``Workflow`` of ``Transition`` rows in its ``domain.py``.
A step that is not in the table is refused with CONFLICT; the table is complete.

The API (stable: services and their tests build on it)
------------------------------------------------------
``Transition(before, action, after, made_by, event=None, needs=())``
    One row, keyed by (``before``, ``action``): ``before`` None is "not there yet" (the step
    that creates the thing). ``made_by``: the roles that may take it (``SYSTEM_ROLE``,
    ``"system"``: the service itself, on a timer or as a consequence of another step).
    ``event``: the event type the step records in the outbox (a literal, so grep finds it;
    None: no event). ``needs``: what the step cannot be taken without, as words the service
    checks or gives (``"reason"`` is checked by the kit; others, such as ``"stock"``, are for
    the service).
    ``needs_reason`` says whether ``"reason"`` is among them.

``Workflow(*transitions, refused=..., forbidden=..., reason_missing=...)``
    The table. One action may start from several states (one row per state). The keyword
    arguments word the errors a client sees: ``refused(current, action)`` the CONFLICT
    message, ``forbidden`` the FORBIDDEN message (a string, or ``forbidden(action,
    actor)``), ``reason_missing(transition)`` the BAD_USER_INPUT message (field ``reason``).

    ``step(current, action)``          the row, or None
    ``transition(current, action)``    the row, or CONFLICT
    ``require_role(action, actor, transition=None)``
                                       FORBIDDEN unless some row of ``action`` (or the row
                                       ``transition``) lets the actor's role take it
                                       (``actor`` a dict with ``role``)
    ``reason(transition, reason)``     the reason tidied (None when empty); BAD_USER_INPUT
                                       when the row needs one and there is none (an action's
                                       name instead of a row: when all its rows need one)
    ``take(current, action, actor, reason=None)``
                                       the row after all three checks, in that order:
                                       CONFLICT, FORBIDDEN, BAD_USER_INPUT
    ``roles(action)``, ``actions()``, ``states()``, ``events()``, ``rows(action=None)``
                                       what the table holds, for docs, tests and forms
    Ownership (a municipality only its own, a caregiver only theirs) is no role: the
    service's ``may_*`` rules check it, and raise FORBIDDEN as this kit does.

``cannot_be(thing, past)``
    The usual ``refused`` wording: "a submitted claim cannot be paid", "a new order cannot
    be shipped"; ``past`` maps an action to its past participle (the action itself when
    missing), the state is written in lower case with spaces.

``actor_trace(actor, fields=ACTOR_FIELDS)``
    Who did something, as stored: the role and pseudonymous subject (never a name or BSN),
    plus the other fields of the actor asked for (e.g. ``"municipality"``).

``audit_entry(before, after, action, actor, at, reason=None, *, actor_fields=ACTOR_FIELDS,
**details)``
    The one entry a step appends to a document's history: ``from``, ``to``, ``action``,
    ``at``, ``by`` (``actor_trace``), ``reason`` and any ``details`` the service keeps with
    it (the bags of a bag order step, the changed fields of a support point).

``history_view(history, *details, subjects=False)``
    The audit trail as it leaves the service, oldest first: per entry ``from_status``,
    ``to_status``, ``action``, ``at`` (ISO 8601), ``actor_role``, ``reason`` and the named
    ``details``; with ``subjects`` also ``actor_sub``. The gateway's
    ``gateway.schema.shared.audit_step`` is the GraphQL type of one such entry.
"""
from dataclasses import dataclass

from common.errors import BadUserInput, Conflict, Forbidden

ACTOR_FIELDS = ("role", "sub")
SYSTEM_ROLE = "system"          # the role of the service itself in ``made_by``


@dataclass(frozen=True)
class Transition:
    """From ``before`` (None: not yet there) by ``action`` to ``after``; see the module
    docstring for the fields."""
    before: str | None
    action: str
    after: str
    made_by: tuple
    event: str | None = None
    needs: tuple = ()

    @property
    def needs_reason(self):
        return "reason" in self.needs


def _refused(current, action):
    return f"{'nothing' if current is None else current} cannot be changed by {action}"


def cannot_be(thing, past):
    """A ``refused`` wording for ``thing`` (a noun): "a <state> <thing> cannot be <past>"."""
    def refused(current, action):
        state = current.lower().replace("_", " ") if current else "new"
        return f"a {state} {thing} cannot be {past.get(action, action)}"
    return refused


def _reason_missing(transition):
    return "reason: give a reason"


class Workflow:
    """A complete table of ``Transition`` rows, keyed by (state, action)."""

    def __init__(self, *transitions, refused=_refused,
                 forbidden="this operation is not allowed for your role",
                 reason_missing=_reason_missing):
        self._rows = {}
        for transition in transitions:
            key = (transition.before, transition.action)
            if key in self._rows:
                raise ValueError(f"two rows for {key} in one workflow")
            self._rows[key] = transition
        self._refused = refused
        self._forbidden = forbidden
        self._reason_missing = reason_missing

    # --- what the table holds -------------------------------------------------------------

    def rows(self, action=None):
        """Every row, or those of ``action`` (one per state it starts from)."""
        return tuple(t for t in self._rows.values() if action is None or t.action == action)

    def actions(self):
        return tuple(dict.fromkeys(t.action for t in self._rows.values()))

    def states(self):
        """Every state a row starts from or leads to (None, "not there yet", left out)."""
        found = [s for t in self._rows.values() for s in (t.before, t.after) if s is not None]
        return tuple(dict.fromkeys(found))

    def events(self):
        return tuple(dict.fromkeys(t.event for t in self._rows.values() if t.event))

    def roles(self, action):
        """Every role that may take ``action`` from some state."""
        found = [role for t in self._rows.values() if t.action == action for role in t.made_by]
        return tuple(dict.fromkeys(found))

    # --- checking a step ------------------------------------------------------------------

    def step(self, current, action):
        """The row of ``action`` from ``current``, or None when there is none."""
        return self._rows.get((current, action))

    def transition(self, current, action):
        """The row of ``action`` from ``current``; CONFLICT when the table has none."""
        found = self._rows.get((current, action))
        if found is None:
            raise Conflict(self._refused(current, action))
        return found

    def require_role(self, action, actor, transition=None):
        """FORBIDDEN unless the actor's role may take ``action`` (from ``transition``'s state
        when given, else from any state)."""
        role = (actor or {}).get("role")
        roles = transition.made_by if transition is not None else self.roles(action)
        if role not in roles:
            message = self._forbidden
            raise Forbidden(message if isinstance(message, str) else message(action, actor))

    def reason(self, transition, reason):
        """The reason given, tidied (None when empty); BAD_USER_INPUT when the row needs one
        and none is given. ``transition`` may be an action's name, checked before the state is
        known: it needs a reason when every row of that action does."""
        if isinstance(transition, str):
            rows = self.rows(transition)
            needed = [t for t in rows if t.needs_reason]
            transition = needed[0] if needed and len(needed) == len(rows) else rows[0]
        reason = (reason or "").strip() or None
        if transition.needs_reason and reason is None:
            raise BadUserInput(self._reason_missing(transition), field="reason")
        return reason

    def take(self, current, action, actor, reason=None):
        """The row of ``action`` from ``current`` for ``actor``: CONFLICT when the table has
        no such step, FORBIDDEN when the actor's role may not take it, BAD_USER_INPUT when it
        needs a reason and none is given."""
        found = self.transition(current, action)
        self.require_role(action, actor, found)
        self.reason(found, reason)
        return found


# --- the audit trail ------------------------------------------------------------------------

def actor_trace(actor, fields=ACTOR_FIELDS):
    """Who did something, for an audit trail: a role and a pseudonymous id (and ``fields``)."""
    actor = actor or {}
    return {field: actor.get(field) for field in fields}


def audit_entry(before, after, action, actor, at, reason=None, *, actor_fields=ACTOR_FIELDS,
                **details):
    """The entry a step appends to a document's history."""
    return {"from": before, "to": after, "action": action, "at": at,
            "by": actor_trace(actor, actor_fields), "reason": reason, **details}


def history_view(history, *details, subjects=False):
    """The audit trail as it leaves the service, oldest first."""
    view = []
    for entry in history or ():
        by = entry.get("by") or {}
        step = {"from_status": entry["from"], "to_status": entry["to"],
                "action": entry["action"], "at": entry["at"].isoformat(),
                "actor_role": by.get("role"), "reason": entry.get("reason")}
        if subjects:
            step["actor_sub"] = by.get("sub")
        step.update({name: entry.get(name) for name in details})
        view.append(step)
    return view
