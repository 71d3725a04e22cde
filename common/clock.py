"""The platform's one clock: every service, the store and the rules ask it the time.

``now()`` is the moment in UTC; ``now_millis()`` the same moment as the store keeps it
(milliseconds), so that an answer made from a document before it is stored equals a later
read; ``today()`` the calendar day (local time, as the Dutch desks count days).

A test sets the clock with ``frozen(moment)`` (a context manager) or ``set(moment)`` and
``reset()``; from then on every caller in the process sees that moment."""
from contextlib import contextmanager
from datetime import date, datetime, timezone

_fixed = None


def now():
    """The current moment, timezone-aware UTC."""
    return _fixed if _fixed is not None else datetime.now(timezone.utc)


def now_millis():
    """The current moment, cut to milliseconds as the store keeps it."""
    moment = now()
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def today():
    """The current calendar day."""
    return now().astimezone().date() if _fixed is not None else date.today()


def set(moment):  # noqa: A001 - the clock's own verb
    """From now on the clock answers ``moment`` (an aware datetime, or a date: its start in
    UTC)."""
    global _fixed
    if isinstance(moment, date) and not isinstance(moment, datetime):
        moment = datetime(moment.year, moment.month, moment.day, tzinfo=timezone.utc)
    if moment.tzinfo is None:
        raise ValueError("the clock is set to an aware moment")
    _fixed = moment.astimezone(timezone.utc)


def reset():
    """The clock follows real time again."""
    global _fixed
    _fixed = None


@contextmanager
def frozen(moment):
    """The clock stands at ``moment`` inside the block."""
    before = _fixed
    set(moment)
    try:
        yield
    finally:
        globals()["_fixed"] = before
