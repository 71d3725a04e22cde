"""A workflow as one table: every allowed step, who may make it and what it needs.

Each service's ``domain.py`` writes its table with ``Transition`` rows; a step that is not
in the table is refused (the service answers CONFLICT)."""
from dataclasses import dataclass


@dataclass(frozen=True)
class Transition:
    """From ``before`` (None: not yet there) by ``action`` to ``after``. ``made_by``: the
    roles that may make it ("system": the service itself, on a timer). ``needs_reason``:
    what the step is called when it cannot be made without a reason ("a rejection")."""
    before: str | None
    action: str
    after: str
    made_by: tuple
    needs_reason: str | None = None


class Workflow:
    """The complete table; each action leads from one state."""

    def __init__(self, *transitions):
        self.transitions = {transition.action: transition for transition in transitions}

    def __getitem__(self, action):
        return self.transitions[action]

    def step(self, current, action):
        """The transition ``action`` makes from ``current``, or None when there is none."""
        transition = self.transitions.get(action)
        return transition if transition is not None and transition.before == current else None
