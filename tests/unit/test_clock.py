"""The one clock: real time unless a test sets it, and every caller sees the moment set."""
from datetime import date, datetime, timedelta, timezone

import pytest

from common import clock
from common.errors import BadUserInput
from common.schemas.declaration import DeclarationRequestInput

MOMENT = datetime(2031, 5, 6, 7, 8, 9, 123456, tzinfo=timezone.utc)


def test_real_time_unless_set():
    before = datetime.now(timezone.utc)
    assert before - timedelta(seconds=5) <= clock.now() <= before + timedelta(seconds=5)
    assert clock.now().tzinfo is not None
    assert clock.today() == date.today()


def test_a_frozen_clock_holds_for_every_caller_and_is_released():
    with clock.frozen(MOMENT):
        assert clock.now() == MOMENT
        assert clock.now_millis() == MOMENT.replace(microsecond=123000)
        assert clock.today() == MOMENT.astimezone().date()
        with clock.frozen(date(2032, 1, 1)):
            assert clock.now() == datetime(2032, 1, 1, tzinfo=timezone.utc)
        assert clock.now() == MOMENT
    assert clock.now() != MOMENT


def test_set_and_reset_and_only_aware_moments():
    clock.set(MOMENT)
    try:
        assert clock.now() == MOMENT
    finally:
        clock.reset()
    assert clock.now() != MOMENT
    with pytest.raises(ValueError):
        clock.set(datetime(2031, 5, 6))


def test_input_rules_count_days_by_the_clock():
    request = {"municipalityCode": "GM0363", "purposes": ["TRAVEL_COST_FUND"],
               "hoursPerWeek": "10", "careSince": "2031-05-07",
               "caregiver": {"bsn": "111222333", "name": "A", "postcode": "1012 AB"},
               "careRecipient": {"name": "B", "postcode": "1012 AB", "relationship": "ouder"}}
    with clock.frozen(MOMENT):
        with pytest.raises(BadUserInput) as future:
            DeclarationRequestInput.parsed(request)
        assert future.value.field == "input.careSince"
    with clock.frozen(MOMENT + timedelta(days=2)):
        DeclarationRequestInput.parsed(request)
