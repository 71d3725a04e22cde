"""Travel-cost fund rules without I/O: amounts, caps, plausibility, the claim's lifecycle,
and the input a claim is refused for."""
from datetime import date, timedelta
from decimal import Decimal

import pytest

from common import clock
from common.errors import BadUserInput, Conflict, Forbidden
from common.schemas.travel_costs import TravelClaimInput, TripInput
from services.declaration import domain as declaration_domain
from services.travel_costs import domain

RULES = domain.FundRules()
AMSTERDAM, UTRECHT = (52.374557, 4.896035), (52.0907, 5.1214)   # ~36 km apart
CENTROIDS = {"1012": AMSTERDAM, "3511": UTRECHT}


def trip(**changes):
    data = {"date": "2026-03-02", "fromPostcode": "1012 AB", "toPostcode": "3511 AA",
            "distanceKm": "40.5", "returnTrip": True, "mode": "CAR", **changes}
    return TripInput.model_validate(data)


def amount(**changes):
    return domain.trip_amount(0, trip(**changes), RULES, "input.trips.0.date")


def test_two_times_40_5_km_by_car_in_2026_is_18_63():
    assert amount() == (Decimal("18.63"), None)
    assert amount(mode="BICYCLE", returnTrip=False) == (Decimal("9.32"), None)   # 9.315 half up


@pytest.mark.parametrize("day, expected", [
    ("2023-01-01", "0.21"), ("2023-12-31", "0.21"), ("2024-01-01", "0.23"), ("2026-06-30", "0.23")])
def test_the_km_rate_is_the_one_of_the_trip_s_date(day, expected):
    euros, _ = amount(date=day, distanceKm="100", returnTrip=False)
    assert euros == Decimal(expected) * 100


def test_a_trip_before_the_rate_table_is_refused_on_its_date():
    with pytest.raises(BadUserInput) as refused:
        amount(date="2022-12-31")
    assert refused.value.field == "input.trips.0.date"


def test_amounts_round_half_up_to_cents():
    assert domain.euros(Decimal("2.625")) == Decimal("2.63")      # banker's rounding: 2.62
    assert domain.euros(Decimal("2.615")) == Decimal("2.62")
    assert amount(distanceKm="12.5", returnTrip=False, date="2023-05-01")[0] == Decimal("2.63")
    assert amount(mode="TAXI", costEuros="45.55")[0] == Decimal("45.55")


def test_public_transport_and_taxi_are_paid_as_stated_up_to_the_cap_per_trip():
    assert amount(mode="PUBLIC_TRANSPORT", costEuros="99.99") == (Decimal("99.99"), None)
    euros, note = amount(mode="TAXI", costEuros="180")
    assert euros == Decimal("100.00") and "100.00" in note
    capped = domain.FundRules(trip_cost_cap=Decimal("50"))
    assert domain.trip_amount(0, trip(mode="TAXI", costEuros="80"), capped, "f")[0] == Decimal("50.00")


def test_only_trips_of_more_than_the_minimum_distance_count():
    assert amount(distanceKm="10")[0] == Decimal("0.00")
    assert "10 km one way or less" in amount(distanceKm="10")[1]
    assert amount(distanceKm="10.01", returnTrip=False)[0] == Decimal("2.30")
    assert amount(mode="PUBLIC_TRANSPORT", costEuros="8", distanceKm="9.9")[0] == Decimal("0.00")


def test_a_claim_of_short_trips_only_is_refused():
    with pytest.raises(BadUserInput) as refused:
        domain.assess_trips([trip(distanceKm="4"), trip(distanceKm="8", mode="BICYCLE")],
                            CENTROIDS, RULES)
    assert refused.value.field == "input.trips"


def test_assessment_per_year_with_notes_and_unknown_postcode_areas():
    assessment = domain.assess_trips(
        [trip(), trip(date="2025-12-31", mode="TAXI", costEuros="120"), trip(distanceKm="5")],
        CENTROIDS, RULES)
    assert assessment.trip_cents == [1863, 10000, 0]
    assert assessment.cents_by_year == {2026: 1863, 2025: 10000}
    assert len(assessment.notes) == 2 and assessment.hold_reasons == []
    with pytest.raises(BadUserInput) as refused:
        domain.assess_trips([trip(), trip(toPostcode="9876 ZZ")], CENTROIDS, RULES)
    assert refused.value.field == "input.trips.1.toPostcode"
    assert "9876" not in refused.value.message   # the field and the rule, never the value


def test_a_distance_far_over_the_straight_line_holds_the_claim():
    straight = Decimal("36.0")
    assert domain.plausible(Decimal("62.6"), straight, RULES)           # 1.6 x 36 + 5 = 62.6
    assert not domain.plausible(Decimal("62.7"), straight, RULES)
    assessment = domain.assess_trips([trip(distanceKm="150")], CENTROIDS, RULES)
    assert len(assessment.hold_reasons) == 1 and "trip 1: 150 km stated" in assessment.hold_reasons[0]
    assert domain.hold_reason(assessment, None).startswith("implausible distance")
    plain = domain.assess_trips([trip()], CENTROIDS, RULES)
    assert domain.hold_reason(plain, {"status": "ISSUED"}) is None
    assert domain.hold_reason(plain, {"status": "REVOKED"}) == "the declaration was revoked"


def test_the_annual_cap_pays_what_is_left_of_the_year_and_says_so():
    grants, notes = domain.annual_grants({2026: 50000}, {2026: 120000}, RULES.annual_cap)
    assert grants == {2026: 30000}
    assert notes == ["200.00 over the annual cap of 1500.00 for 2026 is not paid"]
    grants, notes = domain.annual_grants({2025: 10000, 2026: 5000}, {2025: 150000}, RULES.annual_cap)
    assert grants == {2025: 0, 2026: 5000} and "for 2025" in notes[0]
    assert domain.annual_grants({2026: 1000}, {}, RULES.annual_cap) == ({2026: 1000}, [])
    with pytest.raises(BadUserInput) as refused:
        domain.annual_grants({2026: 1000}, {2026: 150000}, RULES.annual_cap)
    assert refused.value.field == "input.trips"


def test_settings_come_from_the_config_as_written():
    rules = domain.FundRules.from_config({
        "KM_RATES": "2024-01-01=0.23; 2023-01-01=0.21;2027-01-01=0.25", "ANNUAL_CAP": "2000.50",
        "TRIP_COST_CAP": "75", "MIN_DISTANCE_KM": "", "PLAUSIBILITY_FACTOR": None})
    assert rules.km_rates[0] == (date(2023, 1, 1), Decimal("0.21"))
    assert rules.km_rate(date(2027, 1, 1), "f") == Decimal("0.25")
    assert rules.annual_cap == Decimal("2000.50") and rules.trip_cost_cap == Decimal("75")
    assert rules.min_distance_km == Decimal("10") and rules.plausibility_factor == Decimal("1.6")
    with pytest.raises(ValueError):
        domain.FundRules.from_config({"KM_RATES": "from 2023: 0.21"})


def test_the_same_trip_twice_in_one_claim_is_a_conflict_naming_it():
    with pytest.raises(Conflict) as refused:
        domain.refuse_repeated_trips([trip(), trip(mode="TAXI", costEuros="30"), trip()])
    assert refused.value.field == "input.trips.2"
    assert "trip 1 of this claim" in refused.value.message
    for value in ("2026-03-02", "2026", "taxi", "TAXI", "car", "CAR", "1012", "3511"):
        assert value not in refused.value.message   # neither the trip's date nor its mode
    domain.refuse_repeated_trips([trip(), trip(returnTrip=False, toPostcode="3511 AB")])


STATUSES = (None, *domain.EVENT_OF)
ACTIONS = ("submit", "approve", "reject", "hold", "pay")
ALLOWED = {(None, "submit"): ("SUBMITTED", "caregiver"),
           ("SUBMITTED", "approve"): ("APPROVED", "fund"), ("SUBMITTED", "reject"): ("REJECTED", "fund"),
           ("ON_HOLD", "approve"): ("APPROVED", "admin"), ("ON_HOLD", "reject"): ("REJECTED", "admin"),
           ("SUBMITTED", "hold"): ("ON_HOLD", "system"), ("APPROVED", "hold"): ("ON_HOLD", "system"),
           ("ON_HOLD", "hold"): ("ON_HOLD", "system"), ("APPROVED", "pay"): ("PAID", "system")}


@pytest.mark.parametrize("status", STATUSES)
@pytest.mark.parametrize("action", ACTIONS)
def test_only_the_table_s_transitions_by_their_roles(status, action):
    if (status, action) not in ALLOWED:
        with pytest.raises(Conflict):
            domain.next_status(status, action, {"role": "admin"}, "a reason")
        return
    after, role = ALLOWED[(status, action)]
    assert domain.next_status(status, action, {"role": role}, "a reason") == after
    for other in ("caregiver", "fund", "municipality", "system"):
        allowed_roles = domain.CLAIM_LIFECYCLE.step(status, action).made_by
        if other not in allowed_roles:
            with pytest.raises(Forbidden):
                domain.next_status(status, action, {"role": other}, "a reason")


def test_what_needs_a_reason():
    with pytest.raises(BadUserInput) as refused:
        domain.next_status("SUBMITTED", "reject", {"role": "fund"}, None)
    assert refused.value.field == "reason"
    with pytest.raises(BadUserInput):      # lifting a hold is a new review, with its reason
        domain.next_status("ON_HOLD", "approve", {"role": "fund"}, "")
    assert domain.next_status("SUBMITTED", "approve", {"role": "fund"}, None) == "APPROVED"
    assert domain.review_reason("  checked ") == "checked" and domain.review_reason(" ") is None
    with pytest.raises(BadUserInput):
        domain.review_reason("x" * 501)


def test_the_iban_is_shown_masked():
    assert domain.mask_iban("NL91ABNA0417164300") == "NL** **** **** **43 00"
    assert domain.mask_iban("DE89370400440532013000") == "DE** **** **** **** **30 00"


def _claim_input(**changes):
    data = {"declarationReference": "mzv-2026-000001", "iban": "NL91 ABNA 0417 1643 00",
            "accountHolder": "A. de Vries",
            "trips": [{"date": "2026-03-02", "fromPostcode": "1012ab", "toPostcode": "3511 AA",
                       "distanceKm": "40.5", "returnTrip": True, "mode": "CAR"}]}
    for key, value in changes.items():
        if key in data:
            data[key] = value
        else:
            data["trips"][0][key] = value
    return data


@pytest.mark.parametrize("change, field", [
    ({"iban": "NL91ABNA0417164301"}, "input.iban"),
    ({"iban": "TR330006100519786457841326"}, "input.iban"),     # not in the SEPA zone
    ({"date": (date.today() + timedelta(days=1)).isoformat()}, "input.trips.0.date"),
    ({"distanceKm": "-4"}, "input.trips.0.distanceKm"),
    ({"distanceKm": "40.555"}, "input.trips.0.distanceKm"),
    ({"mode": "PUBLIC_TRANSPORT"}, "input.trips.0.costEuros"),
    ({"costEuros": "12.00"}, "input.trips.0.costEuros"),
    ({"fromPostcode": "12"}, "input.trips.0.fromPostcode"),
    ({"trips": []}, "input.trips"),
    ({"accountHolder": "  "}, "input.accountHolder"),
    ({"accountHolder": "A. de Vries\x01"}, "input.accountHolder"),
])
def test_bad_input_names_the_field_without_echoing_it(change, field):
    with pytest.raises(BadUserInput) as refused:
        TravelClaimInput.parsed(_claim_input(**change))
    assert refused.value.field == field
    for value in change.values():
        if isinstance(value, str) and len(value) > 3:
            assert value not in refused.value.message


def test_a_valid_claim_is_normalised():
    claim = TravelClaimInput.parsed(_claim_input())
    assert claim.declaration_reference == "MZV-2026-000001"
    assert claim.iban == "NL91ABNA0417164300" and claim.trips[0].from_postcode == "1012 AB"


def test_what_leaves_the_service_has_no_account_and_no_bsn():
    request = TravelClaimInput.parsed(_claim_input())
    assessment = domain.assess_trips(request.trips, CENTROIDS, RULES)
    claim = domain.new_claim("65f000000000000000000001", request, "key-of-bsn", {"sub": "cg", "role": "caregiver"},
                             assessment, {2026: 1863}, [], domain.mask_iban(request.iban),
                             {"kid": "k", "ct": "sealed"}, clock.now())
    view = domain.claim_view(claim)
    assert view["amount_euros"] == "18.63" and view["iban_masked"] == "NL** **** **** **43 00"
    assert view["trips"][0]["amount_euros"] == "18.63" and view["reason"] is None
    event = domain.event_payload(claim)
    assert set(event) == {"id", "status", "declaration_reference", "amount_euros", "payout_batch_id"}
    assert "key-of-bsn" not in str(view) + str(event) and "NL91" not in str(event)


# --- the declaration service's answer to the fund ----------------------------------------

def _same(left, right):
    return left == right


DECLARATION = {"reference": "MZV-2026-000007", "status": "ISSUED", "caregiver_key": "mine",
               "purposes": ["TRAVEL_COST_FUND"], "municipality_code": "GM0363",
               "valid_from": "2026-03-01", "valid_until": "2027-02-28"}


def test_a_claim_may_be_made_on_ones_own_issued_travel_declaration_within_its_validity():
    answer = declaration_domain.claim_eligibility(DECLARATION, "mine",
                                                  [date(2026, 3, 1), date(2027, 2, 28)], _same)
    assert answer == {"reference": "MZV-2026-000007", "municipality_code": "GM0363",
                      "valid_until": "2027-02-28"}


def test_someone_else_s_declaration_and_an_unknown_one_are_refused_alike():
    with pytest.raises(Forbidden) as theirs:
        declaration_domain.claim_eligibility(DECLARATION, "yours", [date(2026, 3, 2)], _same)
    with pytest.raises(Forbidden) as unknown:
        declaration_domain.claim_eligibility(None, "yours", [date(2026, 3, 2)], _same)
    assert theirs.value.message == unknown.value.message
    assert theirs.value.field == unknown.value.field == "input.declarationReference"


@pytest.mark.parametrize("changes, dates, field", [
    ({"status": "REVOKED"}, [date(2026, 3, 2)], "input.declarationReference"),
    ({"purposes": ["PARKING_PERMIT"]}, [date(2026, 3, 2)], "input.declarationReference"),
    ({}, [date(2026, 3, 2), date(2026, 2, 28)], "input.trips.1.date"),
    ({}, [date(2027, 3, 1)], "input.trips.0.date"),
])
def test_a_declaration_that_does_not_carry_the_claim_is_bad_input(changes, dates, field):
    with pytest.raises(BadUserInput) as refused:
        declaration_domain.claim_eligibility({**DECLARATION, **changes}, "mine", dates, _same)
    assert refused.value.field == field


def test_a_caregiver_is_refused_alike_for_another_s_claim_and_an_unknown_one():
    def same(left, right):
        return left == right

    claim = {"caregiver_key": "mine"}
    caregiver = {"role": "caregiver", "bsn": "x"}
    domain.may_read(caregiver, claim, "mine", same)
    refusals = []
    for other_claim, key in ((claim, "theirs"), (None, "theirs"), (None, "mine")):
        with pytest.raises(Forbidden) as refused:
            domain.may_read(caregiver, other_claim, key, same)
        refusals.append(refused.value.message)
    assert len(set(refusals)) == 1
    domain.may_read({"role": "fund"}, None, None, same)   # staff: an unknown id is just none
