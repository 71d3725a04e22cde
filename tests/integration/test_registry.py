"""The registry through the GraphQL contract and its RPC, on the real broker and the
embedded store: upkeep of support points, history, events, search, authorisation."""
import csv
import uuid

import pytest

from ops.reference import import_pc4_areas
from services.registry.search import haversine_km
from tests.support import Handled, error_codes, support_point_count, token

POINT_FIELDS = """id name kind municipalityCode servesMunicipalityCodes
    address { street houseNumber postcode city } phone email website areas active version
    updatedAt"""
REGISTER = f"""mutation($input: SupportPointInput!) {{
    registerSupportPoint(input: $input) {{ {POINT_FIELDS} }} }}"""
UPDATE = f"""mutation($id: ID!, $input: SupportPointInput!, $v: Int!) {{
    updateSupportPoint(id: $id, input: $input, expectedVersion: $v) {{ {POINT_FIELDS} }} }}"""
DEACTIVATE = """mutation($id: ID!, $reason: String!) {
    deactivateSupportPoint(id: $id, reason: $reason) { id active version } }"""
SEARCH = """query($m: String, $p: String, $a: SupportArea, $first: Int, $after: String) {
    supportPoints(municipalityCode: $m, postcode: $p, area: $a, first: $first, after: $after) {
        items { id name active } total nextCursor } }"""
NEAREST = """query($p: String!, $a: SupportArea, $limit: Int) {
    nearestSupportPoints(postcode: $p, area: $a, limit: $limit) {
        id name address { postcode } } }"""
ONE = f"query($id: ID!) {{ supportPoint(id: $id) {{ {POINT_FIELDS} }} }}"
HISTORY = """query($id: ID!) { supportPointHistory(id: $id) {
    version change actorRole actorSub reason changes { field old new } } }"""

ADMIN = token("admin")
VLIELAND, TERSCHELLING, AMELAND, SCHIERMONNIKOOG = "GM0096", "GM0093", "GM0060", "GM0088"


def municipality(code):
    return token("municipality", municipality=code)


def point_input(seat=VLIELAND, postcode="8899aa", **changes):
    data = {"name": f"Steunpunt {uuid.uuid4().hex[:8]}", "kind": "LOCAL",
            "municipalityCode": seat,
            "address": {"street": "Dorpsstraat", "houseNumber": "1", "postcode": postcode,
                        "city": "Vlieland"},
            "phone": "0562-45 12 34", "email": "info@example.org",
            "website": "https://example.org/steunpunt", "areas": ["INFORMATION", "RESPITE_CARE"]}
    data.update(changes)
    return data


def register(gql, data, as_token=ADMIN):
    answer = gql(REGISTER, {"input": data}, token=as_token)
    assert "errors" not in answer, answer
    return answer["data"]["registerSupportPoint"]


@pytest.fixture(scope="module")
def reference(rpc, municipalities, reference_data):
    report = import_pc4_areas(rpc, reference_data / "pc4.csv")
    assert report["rejected"] == []
    return {row["pc4"]: (float(row["latitude"]), float(row["longitude"]))
            for row in csv.DictReader(open(reference_data / "pc4.csv", encoding="utf-8"))}


def test_register_update_deactivate_with_history_and_events(gql, platform, reference):
    # the campaign keeps a read model of the points: it handles each event
    registered = Handled(platform, "campaign", "support_point.registered")
    deactivated = Handled(platform, "campaign", "support_point.deactivated")
    staff = municipality(VLIELAND)
    created = register(gql, point_input(), staff)
    assert created["address"]["postcode"] == "8899 AA"
    assert created["servesMunicipalityCodes"] == [VLIELAND]
    assert (created["version"], created["active"]) == (1, True)
    assert created["updatedAt"].endswith("+00:00")
    assert registered.grown_by(1)

    changed = point_input(name="Steunpunt Vlieland", phone="0562 451 235")
    updated = gql(UPDATE, {"id": created["id"], "input": changed, "v": 1}, token=staff)
    assert updated["data"]["updateSupportPoint"]["version"] == 2
    assert updated["data"]["updateSupportPoint"]["name"] == "Steunpunt Vlieland"

    stale = gql(UPDATE, {"id": created["id"], "input": point_input(name="Overschreven"), "v": 1},
                token=ADMIN)
    assert error_codes(stale) == ["CONFLICT"]
    assert stale["errors"][0]["extensions"]["field"] == "expectedVersion"
    assert not any(digit in stale["errors"][0]["message"] for digit in "0123456789")
    kept = gql(ONE, {"id": created["id"]})["data"]["supportPoint"]
    assert (kept["name"], kept["version"], kept["phone"]) == ("Steunpunt Vlieland", 2,
                                                              "0562 451 235")

    gone = gql(DEACTIVATE, {"id": created["id"], "reason": "merged with Terschelling"},
               token=staff)
    assert gone["data"]["deactivateSupportPoint"] == {"id": created["id"], "active": False,
                                                      "version": 3}
    assert deactivated.grown_by(1)
    found = gql(SEARCH, {"m": VLIELAND})["data"]["supportPoints"]["items"]
    assert created["id"] not in [p["id"] for p in found]
    assert gql(ONE, {"id": created["id"]})["data"]["supportPoint"]["active"] is False
    again = gql(DEACTIVATE, {"id": created["id"], "reason": "twice"}, token=staff)
    assert error_codes(again) == ["CONFLICT"]
    late_update = gql(UPDATE, {"id": created["id"], "input": changed, "v": 3}, token=staff)
    assert error_codes(late_update) == ["CONFLICT"]

    history = gql(HISTORY, {"id": created["id"]}, token=staff)["data"]["supportPointHistory"]
    assert [(h["version"], h["change"], h["actorRole"]) for h in history] == [
        (1, "registered", "municipality"), (2, "updated", "municipality"),
        (3, "deactivated", "municipality")]
    assert history[0]["actorSub"] == "test-municipality"
    assert {c["field"]: (c["old"], c["new"]) for c in history[1]["changes"]} == {
        "name": (f'"{created["name"]}"', '"Steunpunt Vlieland"'),
        "phone": ('"0562-45 12 34"', '"0562 451 235"')}
    assert history[2]["reason"] == "merged with Terschelling"
    assert {c["field"] for c in history[2]["changes"]} == {"active"}


def test_regional_point_is_found_from_each_municipality_and_by_postcode(gql, reference):
    regional = register(gql, point_input(
        seat=TERSCHELLING, postcode="8881 AB", kind="REGIONAL",
        servesMunicipalityCodes=[AMELAND, SCHIERMONNIKOOG], areas=["EDUCATION"]))
    assert regional["servesMunicipalityCodes"] == sorted([TERSCHELLING, AMELAND, SCHIERMONNIKOOG])
    for variables in ({"m": AMELAND}, {"m": SCHIERMONNIKOOG}, {"m": TERSCHELLING},
                      {"p": "9166 AA"}, {"p": "9166"}, {"p": "9161ab", "a": "EDUCATION"},
                      {"m": AMELAND, "p": "9163 BB"}):
        page = gql(SEARCH, variables)["data"]["supportPoints"]
        assert regional["id"] in [p["id"] for p in page["items"]], variables
    for variables in ({"m": AMELAND, "a": "RESPITE_CARE"}, {"m": VLIELAND},
                      {"m": AMELAND, "p": "8899 AA"}):
        page = gql(SEARCH, variables)["data"]["supportPoints"]
        assert regional["id"] not in [p["id"] for p in page["items"]], variables


def test_pages_follow_the_cursor_with_a_total(gql, rpc, reference):
    seat = "GM0277"   # Rozendaal, used by no other test
    ids = {register(gql, point_input(seat=seat, postcode="6891 AA", name=f"Punt {n}"))["id"]
           for n in "EDCBA"}
    seen, names, after = [], [], None
    while True:
        page = gql(SEARCH, {"m": seat, "first": 2, "after": after})["data"]["supportPoints"]
        assert page["total"] == 5
        assert len(page["items"]) <= 2
        seen += [p["id"] for p in page["items"]]
        names += [p["name"] for p in page["items"]]
        after = page["nextCursor"]
        if after is None:
            break
    assert sorted(seen) == sorted(ids) and len(seen) == 5
    assert names == ["Punt A", "Punt B", "Punt C", "Punt D", "Punt E"]
    answer = rpc.registry.search_support_points(municipality_code=seat, first=5)
    assert answer["total"] == 5 and answer["next_cursor"] is None


def test_nearest_is_ordered_by_centroid_distance(gql, rpc, reference):
    for postcode in ("9163 AA", "8899 AB", "8897 AA", "6891 AB"):
        register(gql, point_input(postcode=postcode, areas=["PRACTICAL_HELP"]))
    origin = reference["9161"]
    everything = []
    after = None
    while True:
        page = rpc.registry.search_support_points(first=100, after=after)
        everything += page["items"]
        after = page["next_cursor"]
        if after is None:
            break
    expected = sorted((round(haversine_km(origin, reference[p["address"]["postcode"][:4]]), 2),
                       p["id"]) for p in everything
                      if p["address"]["postcode"][:4] in reference)
    nearest = rpc.registry.nearest_support_points("9161 AA", None, 8)
    assert [p["distance_km"] for p in nearest] == [d for d, _ in expected[:8]]
    through_gateway = gql(NEAREST, {"p": "9161 AA", "limit": 8})["data"]["nearestSupportPoints"]
    assert [p["id"] for p in through_gateway] == [p["id"] for p in nearest]

    helpers = gql(NEAREST, {"p": "9161", "a": "PRACTICAL_HELP"})["data"]["nearestSupportPoints"]
    assert len(helpers) >= 4
    assert [p["address"]["postcode"][:4] for p in helpers][:3] == ["9163", "8897", "8899"]


@pytest.mark.parametrize("query, variables, field", [
    (SEARCH, {"p": "1099 AA"}, "postcode"),        # a real postcode without a PC4 centroid
    (SEARCH, {"p": "99"}, "postcode"),
    (SEARCH, {"m": "Amsterdam"}, "municipalityCode"),
    (SEARCH, {"first": 101}, "first"),
    (SEARCH, {"first": 0}, "first"),
    (SEARCH, {"after": "not-a-cursor"}, "after"),
    (NEAREST, {"p": "ABCD"}, "postcode"),
    (NEAREST, {"p": "9161", "limit": 500}, "limit"),
])
def test_bad_search_input_names_the_argument(gql, reference, query, variables, field):
    answer = gql(query, variables)
    assert error_codes(answer) == ["BAD_USER_INPUT"]
    assert answer["errors"][0]["extensions"]["field"] == field


@pytest.mark.parametrize("changes, field", [
    ({"address": {"street": "Dorpsstraat", "houseNumber": "1", "postcode": "8899 A",
                  "city": "Vlieland"}}, "input.address.postcode"),
    ({"address": {"street": " ", "houseNumber": "1", "postcode": "8899 AA",
                  "city": "Vlieland"}}, "input.address.street"),
    ({"email": "info@"}, "input.email"),
    ({"phone": "bel ons"}, "input.phone"),
    ({"website": "geen adres"}, "input.website"),
    ({"municipalityCode": "GM9999"}, "input.municipalityCode"),
    ({"servesMunicipalityCodes": [AMELAND, "GM12"]}, "input.servesMunicipalityCodes.1"),
    ({"servesMunicipalityCodes": ["GM9998"]}, "input.servesMunicipalityCodes"),
    ({"areas": []}, "input.areas"),
])
def test_bad_point_input_names_the_field_and_changes_nothing(gql, rpc, reference, changes,
                                                              field):
    before = support_point_count(gql)
    answer = gql(REGISTER, {"input": point_input(**changes)}, token=ADMIN)
    assert error_codes(answer) == ["BAD_USER_INPUT"]
    assert answer["errors"][0]["extensions"]["field"] == field
    assert support_point_count(gql) == before


def test_a_bad_update_keeps_the_stored_point(gql, reference):
    created = register(gql, point_input())
    answer = gql(UPDATE, {"id": created["id"], "input": point_input(email="x"), "v": 1},
                 token=ADMIN)
    assert answer["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "field": "input.email"}
    assert gql(ONE, {"id": created["id"]})["data"]["supportPoint"] == created


def test_enum_outside_the_contract_is_refused_before_any_service(gql):
    answer = gql(SEARCH, {"a": "GARDENING"})
    assert error_codes(answer) == ["BAD_USER_INPUT"]


def test_unknown_ids(gql, reference):
    unknown = str(uuid.uuid4())
    assert gql(ONE, {"id": unknown}) == {"data": {"supportPoint": None}}
    answer = gql(UPDATE, {"id": unknown, "input": point_input(), "v": 1}, token=ADMIN)
    assert error_codes(answer) == ["NOT_FOUND"]
    answer = gql(DEACTIVATE, {"id": unknown, "reason": "r"}, token=ADMIN)
    assert error_codes(answer) == ["NOT_FOUND"]


def test_who_may_change_which_point(gql, reference):
    own = municipality(VLIELAND)
    other = municipality(AMELAND)
    assert error_codes(gql(REGISTER, {"input": point_input()})) == ["UNAUTHENTICATED"]
    for role in ("partner", "caregiver", "fund", "campaign"):
        assert error_codes(gql(REGISTER, {"input": point_input()}, token=token(role))) \
            == ["FORBIDDEN"], role
    assert error_codes(gql(REGISTER, {"input": point_input()}, token=other)) == ["FORBIDDEN"]
    created = register(gql, point_input(), own)
    point_id = created["id"]
    itself = token("support_point", support_point=point_id)
    stranger = token("support_point", support_point=str(uuid.uuid4()))
    assert error_codes(gql(REGISTER, {"input": point_input()}, token=itself)) == ["FORBIDDEN"]

    def update(as_token, version, **changes):
        return gql(UPDATE, {"id": point_id, "input": point_input(**changes), "v": version},
                   token=as_token)

    assert error_codes(update(other, 1)) == ["FORBIDDEN"]
    assert error_codes(update(stranger, 1)) == ["FORBIDDEN"]
    assert error_codes(update(token("partner"), 1)) == ["FORBIDDEN"]
    assert error_codes(update(None, 1)) == ["UNAUTHENTICATED"]
    assert error_codes(update(itself, 1, municipalityCode=AMELAND)) == ["FORBIDDEN"]
    assert error_codes(update(own, 1, municipalityCode=AMELAND)) == ["FORBIDDEN"]
    assert update(itself, 1, name="Eigen naam")["data"]["updateSupportPoint"]["version"] == 2
    assert update(ADMIN, 2, municipalityCode=AMELAND)["data"]["updateSupportPoint"][
        "municipalityCode"] == AMELAND
    assert error_codes(update(own, 3)) == ["FORBIDDEN"]     # no longer its seat
    assert error_codes(gql(HISTORY, {"id": point_id}, token=own)) == ["FORBIDDEN"]
    assert error_codes(gql(HISTORY, {"id": point_id})) == ["UNAUTHENTICATED"]
    assert len(gql(HISTORY, {"id": point_id}, token=itself)["data"]["supportPointHistory"]) == 3
    assert error_codes(gql(DEACTIVATE, {"id": point_id, "reason": "weg"}, token=own)) \
        == ["FORBIDDEN"]
    assert gql(DEACTIVATE, {"id": point_id, "reason": "weg"}, token=itself)["data"][
        "deactivateSupportPoint"]["active"] is False


MUNICIPALITIES = "{ municipalities { code name } }"
FOR_POSTCODE = "query($p: String!) { municipalityForPostcode(postcode: $p) { code name } }"


def test_every_municipality_is_listed_by_name_for_anyone(gql, reference, reference_data):
    listed = gql(MUNICIPALITIES)["data"]["municipalities"]
    with open(reference_data / "municipalities.csv", encoding="utf-8") as rows:
        national = {row["gemeentecode"]: row["gemeentenaam"] for row in csv.DictReader(rows)}
    assert {m["code"]: m["name"] for m in listed} == national
    names = [m["name"] for m in listed]
    # as a Dutch reader looks for them: 's-Gravenhage among the G, not before Aa en Hunze
    assert names[0] == "Aa en Hunze"
    assert names.index("Gouda") < names.index("'s-Gravenhage") < names.index("Groningen")
    assert gql(MUNICIPALITIES, token=token("caregiver"))["data"]["municipalities"] == listed


def test_the_municipality_of_a_postcode_follows_from_its_pc4_area(gql, reference):
    assert gql(FOR_POSTCODE, {"p": "1012 AB"})["data"]["municipalityForPostcode"] == {
        "code": "GM0363", "name": "Amsterdam"}
    assert gql(FOR_POSTCODE, {"p": "1381ab"})["data"]["municipalityForPostcode"]["code"] \
        == "GM0363"                                      # Weesp belongs to Amsterdam now
    # 1099 has no CBS area: unknown is null, not an error
    assert gql(FOR_POSTCODE, {"p": "1099 AA"}) == {"data": {"municipalityForPostcode": None}}


def test_a_postcode_that_is_none_is_named_without_its_value(gql, reference):
    answer = gql(FOR_POSTCODE, {"p": "XYZ-12"})
    error = answer["errors"][0]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["extensions"]["field"] == "postcode"
    assert "XYZ" not in error["message"]
