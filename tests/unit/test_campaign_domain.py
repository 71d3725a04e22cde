"""Campaign rules without I/O: the allocation arithmetic, the bag order workflow, local
inserts, campaign reach, and the payload schemas of the campaign's calls and events."""
import random
from datetime import date, datetime, timedelta, timezone

import pytest

from common.errors import BadUserInput, Conflict, Forbidden
from common.events import new_envelope
from common.schemas.campaign import BagOrderInput, CampaignInput
from services.campaign import allocation, domain, leaflet

NOW = datetime(2026, 3, 1, 12, tzinfo=timezone.utc)
ADMIN = {"role": "admin", "sub": "a"}
TEAM = {"role": "campaign", "sub": "c"}


def claim(code, population, demand, waited_days=0):
    return allocation.Claim(code, f"Gemeente {code}", population, demand,
                        NOW - timedelta(days=waited_days))


def bags(shares):
    return {share.claim.code: share.bags for share in shares}


# --- largest remainder ------------------------------------------------------------------

def test_shares_follow_population_and_add_up_to_what_is_available():
    shares = allocation.largest_remainder(1000, [claim("A", 100, 5000), claim("B", 200, 5000),
                                             claim("C", 700, 5000)])
    assert bags(shares) == {"A": 100, "B": 200, "C": 700}
    assert not any(share.remainder_bag or share.capped for share in shares)


def test_the_whole_bags_left_after_rounding_down_go_to_the_largest_remainders():
    # exact quotas 3.5, 2.1 and 1.4: three, two and one whole bag, the seventh to A (0.5)
    shares = allocation.largest_remainder(7, [claim("A", 5000, 50), claim("B", 3000, 50),
                                          claim("C", 2000, 50)])
    assert bags(shares) == {"A": 4, "B": 2, "C": 1}
    by_code = {share.claim.code: share for share in shares}
    assert by_code["A"].remainder_bag and by_code["A"].remainders == 1
    assert not by_code["B"].remainder_bag and not by_code["C"].remainder_bag
    # quotas 2.8, 0.8 and 0.4: the two bags left go to the two remainders of 0.8
    assert bags(allocation.largest_remainder(4, [claim("A", 7, 9), claim("B", 2, 9),
                                             claim("C", 1, 9)])) == {"A": 3, "B": 1, "C": 0}


def test_a_tie_on_the_remainder_goes_to_the_larger_population_then_the_longest_waiting():
    waiting = [claim("A", 100, 50, waited_days=1), claim("B", 100, 50, waited_days=3),
               claim("C", 100, 50, waited_days=2)]
    shares = allocation.largest_remainder(10, waiting)
    assert bags(shares) == {"A": 3, "B": 4, "C": 3}
    assert all(share.tied_with == 2 for share in shares)
    words = allocation._share_words(next(s for s in shares if s.claim.code == "B"), 10)
    assert "tied on that remainder with 2 others and got the extra bag" in words
    # quotas 0.5 and 1.5, equal remainders: the larger population gets the bag left
    assert bags(allocation.largest_remainder(2, [claim("A", 50, 9, waited_days=9),
                                             claim("B", 150, 9)])) == {"A": 0, "B": 2}
    shares = allocation.largest_remainder(1, [claim("A", 100, 9, waited_days=5),
                                          claim("B", 100, 9, waited_days=1)])
    assert bags(shares) == {"A": 1, "B": 0}


def test_no_one_gets_more_than_it_waits_for_and_the_rest_is_shared_again():
    shares = allocation.largest_remainder(100, [claim("A", 900, 10), claim("B", 100, 1000)])
    assert bags(shares) == {"A": 10, "B": 90}
    capped = shares[0]
    assert capped.capped and capped.quota == 90
    # a cap that frees bags can cap the next one too
    shares = allocation.largest_remainder(100, [claim("A", 500, 5), claim("B", 300, 20),
                                            claim("C", 200, 1000)])
    assert bags(shares) == {"A": 5, "B": 20, "C": 75}


def test_when_demand_is_smaller_than_the_stock_every_claim_is_met_and_bags_stay():
    shares = allocation.largest_remainder(1000, [claim("A", 10, 100), claim("B", 20, 200)])
    assert bags(shares) == {"A": 100, "B": 200}


def test_without_known_populations_the_bags_are_shared_equally():
    assert bags(allocation.largest_remainder(9, [claim("A", 0, 50), claim("B", 0, 50),
                                             claim("C", 0, 50)])) == {"A": 3, "B": 3, "C": 3}
    # an unknown population shares only what the known ones do not need
    assert bags(allocation.largest_remainder(10, [claim("A", 100, 20), claim("B", 0, 20)])) == \
        {"A": 10, "B": 0}
    assert bags(allocation.largest_remainder(10, [claim("A", 100, 4), claim("B", 0, 20)])) == \
        {"A": 4, "B": 6}


def test_the_arithmetic_holds_for_many_random_rounds():
    rng = random.Random(12)
    for _ in range(300):
        claims = [claim(f"GM{n:04d}", rng.choice([0, rng.randint(1, 900_000)]),
                        rng.randint(1, 400), rng.randint(0, 30)) for n in range(rng.randint(1, 40))]
        available = rng.randint(0, 6000)
        shares = allocation.largest_remainder(available, claims)
        given = [share.bags for share in shares]
        assert sum(given) == min(available, sum(c.demand for c in claims))
        assert all(0 <= share.bags <= share.claim.demand for share in shares)


def test_a_municipality_s_bags_go_to_its_oldest_orders_first():
    assert allocation.split_over_orders(50, [("a", 30), ("b", 30), ("c", 10)]) == \
        [("a", 30), ("b", 20), ("c", 0)]


def order(order_id, code, requested, allocated=0, minutes=0):
    return {"_id": order_id, "municipality_code": code, "quantity_requested": requested,
            "quantity_allocated": allocated, "status": domain.REQUESTED, "own_lines": [],
            "created_at": NOW + timedelta(minutes=minutes), "history": []}


def test_a_round_explains_every_share_in_plain_words():
    waiting = [order("o1", "GM0363", 600, minutes=1), order("o2", "GM0344", 100, minutes=2),
               order("o3", "GM0363", 600, allocated=100, minutes=3)]
    municipalities = {"GM0363": {"name": "Amsterdam", "population": 900},
                      "GM0344": {"name": "Utrecht", "population": 100}}
    given = allocation.allocation_round(1000, waiting, municipalities)
    assert [(o["_id"], now) for o, now, _ in given] == [("o1", 600), ("o2", 100), ("o3", 300)]
    words = {o["_id"]: text for o, _, text in given}
    assert words["o2"].startswith("Utrecht (GM0344) still needed 100 bags, no more than its "
                                  "exact share of 100.00")
    assert "all it still needed" in words["o2"]
    assert words["o1"].startswith("Amsterdam (GM0363) gets 900 bags: its population of 900")
    assert "number 1 of its 2 waiting orders" in words["o1"]
    assert "number 2 of its 2 waiting orders, oldest first, gets 300; it waits for 200 more" \
        in words["o3"]
    assert domain.completed_municipalities(given) == {"GM0363", "GM0344"}
    changes = domain.round_changes(given, TEAM, NOW, lambda o: {"lines": ["insert"]})
    assert [(c.order_id, c.changes["status"], c.changes["quantity_allocated"],
             c.moves, "insert" in c.changes) for c in changes] == [
        ("o1", domain.ALLOCATED, 600, ("available", "allocated"), True),
        ("o2", domain.ALLOCATED, 100, ("available", "allocated"), True),
        ("o3", domain.REQUESTED, 400, ("available", "allocated"), False)]
    document = domain.round_document(1000, given, TEAM, NOW)
    assert document["allocated"] == 1000 and len(document["allocations"]) == 3


def test_a_round_without_stock_says_so():
    given = allocation.allocation_round(0, [order("o1", "GM0363", 10)], {})
    assert given[0][1] == 0 and "no bags were left" in given[0][2]


# --- the bag order workflow -------------------------------------------------------------

def test_the_workflow_table_holds_every_step_and_nothing_else():
    assert {(s.before, s.action, s.after) for s in domain.WORKFLOW.rows()} == {
        (None, "request", "REQUESTED"), ("REQUESTED", "allocate", "ALLOCATED"),
        ("REQUESTED", "allocate_part", "REQUESTED"), ("ALLOCATED", "ship", "SHIPPED"),
        ("SHIPPED", "deliver", "DELIVERED"), ("REQUESTED", "cancel", "CANCELLED"),
        ("ALLOCATED", "cancel", "CANCELLED")}
    with pytest.raises(Conflict, match="only an allocated order can be shipped"):
        domain.step("REQUESTED", "ship", TEAM)
    for status, action in (("ALLOCATED", "deliver"), ("SHIPPED", "cancel"),
                           ("DELIVERED", "ship"), ("CANCELLED", "cancel"),
                           ("CANCELLED", "allocate")):
        with pytest.raises(Conflict):
            domain.step(status, action, ADMIN, reason="why")


def test_who_may_make_a_step_and_what_it_needs():
    staff = {"role": "municipality", "municipality": "GM0363"}
    assert domain.step("ALLOCATED", "cancel", staff, reason="too many").after == "CANCELLED"
    with pytest.raises(BadUserInput) as missing:
        domain.step("ALLOCATED", "cancel", staff, reason="  ")
    assert missing.value.field == "reason"
    with pytest.raises(Forbidden):
        domain.step("ALLOCATED", "ship", staff)
    with pytest.raises(Forbidden):
        domain.step("REQUESTED", "allocate", staff)
    assert domain.step("REQUESTED", "allocate", domain.SYSTEM).after == "ALLOCATED"
    with pytest.raises(Forbidden):
        domain.step(None, "request", {"role": "partner"})


def test_ownership_of_orders():
    point = {"_id": "p1", "municipality_code": "GM0363", "active": True}
    domain.may_order_for({"role": "municipality", "municipality": "GM0363"}, "GM0363")
    domain.may_order_for({"role": "support_point", "support_point": "p1"}, "GM0363", point)
    domain.may_order_for(TEAM, "GM0344")
    for actor, own in (({"role": "municipality", "municipality": "GM0344"}, None),
                       ({"role": "support_point", "support_point": "p1"}, None),
                       ({"role": "support_point", "support_point": "p1"},
                        {**point, "active": False}),
                       ({"role": "caregiver"}, None)):
        with pytest.raises(Forbidden):
            domain.may_order_for(actor, "GM0363", own)
    staff = {"role": "municipality", "municipality": "GM0363"}
    assert domain.orders_scope(staff, None) == "GM0363"
    assert domain.orders_scope({"role": "support_point"}, None, point) == "GM0363"
    assert domain.orders_scope(ADMIN, None) is None
    with pytest.raises(Forbidden):
        domain.orders_scope(staff, "GM0344")
    with pytest.raises(Forbidden):      # a municipality token that names no municipality
        domain.orders_scope({"role": "municipality"}, None)


def test_a_support_point_orders_for_itself_and_others_name_one_that_serves():
    point = {"_id": "p1", "municipality_code": "GM0363", "active": True,
             "serves_municipality_codes": ["GM0363"]}
    as_point = {"role": "support_point", "support_point": "p1"}
    assert domain.ordering_point(as_point, point, None, None, "GM0363") == "p1"
    with pytest.raises(Forbidden):
        domain.ordering_point(as_point, point, "p2", None, "GM0363")
    assert domain.ordering_point(ADMIN, None, "p1", point, "GM0363") == "p1"
    assert domain.ordering_point(ADMIN, None, None, None, "GM0363") is None
    with pytest.raises(BadUserInput) as wrong:
        domain.ordering_point(ADMIN, None, "p1", point, "GM0344")
    assert wrong.value.field == "supportPointId"


def test_each_step_moves_the_right_bags_and_is_audited():
    placed = domain.new_order(BagOrderInput(municipality_code="GM0363", quantity=40),
                              {"role": "municipality", "sub": "m", "municipality": "GM0363"},
                              None, NOW)
    allocated = domain.allocated_in_full(placed, {"lines": []}, NOW)
    assert (allocated["status"], allocated["quantity_allocated"]) == ("ALLOCATED", 40)
    assert [h["action"] for h in allocated["history"]] == ["request", "allocate"]
    assert allocated["history"][1]["by"]["role"] == "system"
    assert [t for t, _ in domain.announced(allocated, 2)] == ["bag_order.requested",
                                                              "bag_order.allocated"]
    ship = domain.order_change(allocated, domain.step("ALLOCATED", "ship", TEAM), TEAM, NOW)
    assert (ship.moves, ship.bags, ship.event) == (("allocated", "shipped"), 40,
                                                  "bag_order.shipped")
    cancel = domain.order_change(allocated, domain.step("ALLOCATED", "cancel", TEAM, "x"), TEAM,
                                 NOW, reason=" fewer needed ")
    assert (cancel.moves, cancel.bags, cancel.changes["quantity_allocated"]) == \
        (("allocated", "available"), 40, 0)
    assert cancel.entry["reason"] == "fewer needed"
    nothing_to_return = domain.order_change(placed, domain.step("REQUESTED", "cancel", TEAM, "x"),
                                            TEAM, NOW, reason="x")
    assert nothing_to_return.moves is None
    view = domain.order_view(allocated)
    assert view["id"] == placed["_id"] and "_id" not in view


# --- local inserts ----------------------------------------------------------------------

def test_an_insert_lists_the_nearest_help_first_then_the_municipality_s_own_lines():
    points = [
        {"_id": "n", "name": "Mantelzorglijn", "kind": "NATIONAL", "address": None,
         "phone": "030-760 60 55", "website": None},
        {"_id": "l", "name": "Steunpunt Centrum", "kind": "LOCAL",
         "address": {"street": "Dam", "house_number": "1", "postcode": "1012 AB",
                     "city": "Amsterdam"}, "phone": "020-123 45 67",
         "website": "https://example.org/"},
        {"_id": "r", "name": "Regio Amstelland", "kind": "REGIONAL", "address": None,
         "phone": None, "website": None},
    ]
    insert = leaflet.compose("GM0363", {"name": "Amsterdam"}, points, ["Bel de gemeente: 14 020"],
                             NOW)
    assert insert["lines"] == [
        "Steunpunt Centrum · Dam 1, 1012 AB Amsterdam · 020-123 45 67 · https://example.org/",
        "Regio Amstelland", "Mantelzorglijn · 030-760 60 55", "Bel de gemeente: 14 020"]
    printable = leaflet.printable({"_id": "o", "quantity_allocated": 40,
                                   "quantity_requested": 40}, insert)
    assert printable["municipality_name"] == "Amsterdam" and printable["quantity"] == 40


# --- campaigns --------------------------------------------------------------------------

def campaign(**changes):
    document = {"_id": "c1", "scope": "REGIONAL", "municipality_codes": ["GM0363", "GM0344"],
                "opted_out_municipality_codes": [], "materials": ["poster"],
                "ends_on": "2026-12-31"}
    document.update(changes)
    return document


def test_a_campaign_reaches_active_points_serving_a_participating_municipality():
    serving = {"active": True, "serves_municipality_codes": ["GM0344"]}
    assert domain.reaches(campaign(), serving)
    assert not domain.reaches(campaign(), {**serving, "active": False})
    assert not domain.reaches(campaign(opted_out_municipality_codes=["GM0344"]), serving)
    assert not domain.reaches(campaign(), {**serving, "serves_municipality_codes": ["GM0014"]})
    assert domain.reaches(campaign(scope="NATIONAL", municipality_codes=[]),
                          {**serving, "serves_municipality_codes": ["GM0014"]})
    assert domain.participating(campaign(opted_out_municipality_codes=["GM0363"])) == ["GM0344"]


def test_opting_out_is_for_a_municipality_of_a_regional_campaign():
    with pytest.raises(Conflict):
        domain.require_opt_out_allowed(campaign(scope="NATIONAL", municipality_codes=[]),
                                       "GM0363")
    with pytest.raises(BadUserInput) as outside:
        domain.require_opt_out_allowed(campaign(), "GM0014")
    assert outside.value.field == "municipalityCode"
    domain.may_opt_out({"role": "municipality", "municipality": "GM0363"}, "GM0363")
    with pytest.raises(Forbidden):
        domain.may_opt_out({"role": "municipality", "municipality": "GM0344"}, "GM0363")
    with pytest.raises(Forbidden):
        domain.may_opt_out(TEAM, "GM0363")
    with pytest.raises(Conflict):
        domain.require_launchable(campaign(ends_on="2026-02-28"), date(2026, 3, 1))


# --- payload schemas --------------------------------------------------------------------

@pytest.mark.parametrize("data, field", [
    ({"municipalityCode": "GM0363", "quantity": 0}, "quantity"),
    ({"municipalityCode": "GM0363", "quantity": -5}, "quantity"),
    ({"municipalityCode": "GM0363", "quantity": 100_001}, "quantity"),
    ({"municipalityCode": "Amsterdam", "quantity": 5}, "municipalityCode"),
    ({"municipalityCode": "GM0363", "quantity": 5, "localInserts": [" "]}, "localInserts.0"),
])
def test_bad_order_input_names_the_field(data, field):
    with pytest.raises(BadUserInput) as error:
        BagOrderInput.parsed(data, "")
    assert error.value.field == field


CAMPAIGN = {"name": "#deeljezorg voorjaar", "hashtag": "deeljezorg", "scope": "REGIONAL",
            "municipalityCodes": ["gm0363"], "startsOn": "2026-04-01", "endsOn": "2026-06-30",
            "materials": ["poster", "flyer", "poster"]}


def test_campaign_input_is_normalised():
    parsed = CampaignInput.parsed(CAMPAIGN)
    assert (parsed.hashtag, parsed.municipality_codes, parsed.materials) == \
        ("#deeljezorg", ["GM0363"], ["poster", "flyer"])


@pytest.mark.parametrize("changes, field", [
    ({"materials": []}, "input.materials"),
    ({"scope": "REGIONAL", "municipalityCodes": []}, "input.municipalityCodes"),
    ({"scope": "REGIONAL", "municipalityCodes": None}, "input.municipalityCodes"),
    ({"scope": "NATIONAL"}, "input.municipalityCodes"),
    ({"endsOn": "2026-03-31"}, "input.endsOn"),
    ({"hashtag": "deel je zorg"}, "input.hashtag"),
    ({"scope": "LOCAL"}, "input.scope"),
    ({"municipalityCodes": ["GM0363", "XX"]}, "input.municipalityCodes.1"),
])
def test_bad_campaign_input_names_the_field(changes, field):
    with pytest.raises(BadUserInput) as error:
        CampaignInput.parsed({**CAMPAIGN, **changes})
    assert error.value.field == field


def test_events_of_the_campaign_service_carry_no_reason_and_are_catalogued():
    envelope = new_envelope("bag_order.cancelled", {
        "id": "o", "municipality_code": "GM0363", "support_point_id": None,
        "quantity_requested": 5, "quantity_allocated": 0, "status": "CANCELLED"}, "c", "campaign")
    assert "reason" not in envelope.payload
    assert envelope.parsed_payload().status == "CANCELLED"


def test_a_consumer_ignores_fields_it_does_not_know_yet():
    envelope = new_envelope("support_point.registered", {
        "id": "p", "name": "Steunpunt", "kind": "LOCAL", "municipality_code": "GM0363",
        "serves_municipality_codes": ["GM0363"], "areas": ["INFORMATION"], "active": True,
        "version": 1}, "c", "registry")
    newer = envelope.model_copy(update={"payload": {
        **envelope.payload, "opening_hours": "9-17",
        "address": {"street": "Dam", "house_number": "1", "postcode": "1012 AB",
                    "city": "Amsterdam", "floor": "2"}}})
    projected = domain.support_point_projection(newer.parsed_payload())
    assert projected["address"] == {"street": "Dam", "house_number": "1", "postcode": "1012 AB",
                                    "city": "Amsterdam"}
    assert domain.support_point_projection(envelope.parsed_payload())["address"] is None
