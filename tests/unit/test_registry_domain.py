"""Registry rules without I/O: search index, cursor, workflow, authorisation, rows."""
import random
from datetime import datetime, timezone

import pytest

from common.errors import BadUserInput, Conflict, Forbidden
from common.validators import normalise_phone
from services.registry import domain, search

NOW = datetime(2026, 3, 1, tzinfo=timezone.utc)
AREAS = [
    {"_id": "1012", "municipality_code": "GM0363", "lat": 52.374557, "lon": 4.896035},
    {"_id": "3511", "municipality_code": "GM0344", "lat": 52.088329, "lon": 5.115990},
    {"_id": "9711", "municipality_code": "GM0014", "lat": 53.216271, "lon": 6.569345},
]


def point_input(**changes):
    data = {"name": "Steunpunt Noord", "kind": "LOCAL", "municipalityCode": "GM0363",
            "address": {"street": "Dam", "houseNumber": "1", "postcode": "1012ab",
                        "city": "Amsterdam"},
            "areas": ["INFORMATION"]}
    data.update(changes)
    return data


def document(**changes):
    return domain.new_support_point(domain.parse_support_point(point_input(**changes)), NOW)


def test_a_new_point_is_normalised_and_serves_its_seat():
    created = document(servesMunicipalityCodes=["GM0344"], phone=" 020-123  45 67 ", email="")
    assert created["address"]["postcode"] == "1012 AB"
    assert created["serves_municipality_codes"] == ["GM0344", "GM0363"]
    assert created["phone"] == "020-123 45 67" and created["email"] is None
    assert (created["active"], created["version"]) == (True, 1)


@pytest.mark.parametrize("changes, field", [
    ({"address": {"street": "Dam", "houseNumber": "1", "postcode": "12345", "city": "A"}},
     "input.address.postcode"),
    ({"email": "not-an-address"}, "input.email"),
    ({"phone": "call us"}, "input.phone"),
    ({"website": "somewhere"}, "input.website"),
    ({"areas": []}, "input.areas"),
    ({"kind": "GLOBAL"}, "input.kind"),
    ({"servesMunicipalityCodes": ["Utrecht"]}, "input.servesMunicipalityCodes.0"),
    ({"name": "  "}, "input.name"),
])
def test_bad_input_names_the_field(changes, field):
    with pytest.raises(BadUserInput) as raised:
        domain.parse_support_point(point_input(**changes))
    assert raised.value.field == field


def test_phone_shapes():
    assert normalise_phone("+31 20 123 4567") == "+31 20 123 4567"
    assert normalise_phone("0800-1234") == "0800-1234"
    for wrong in ("12", "020-abc", "+", "1" * 16):
        with pytest.raises(ValueError):
            normalise_phone(wrong)


def test_unknown_municipality_is_named():
    with pytest.raises(BadUserInput) as raised:
        domain.require_known_municipalities(document(servesMunicipalityCodes=["GM0344"]),
                                            ["GM0363"])
    assert raised.value.field == "input.servesMunicipalityCodes"
    assert "0344" not in raised.value.message   # the field and the rule, never the value
    with pytest.raises(BadUserInput) as raised:
        domain.require_known_municipalities(document(), [], field="")
    assert raised.value.field == "municipalityCode"


def test_workflow_table_allows_only_its_transitions():
    active = document()
    assert domain.next_state(active, "update") == "active"
    assert domain.next_state(active, "deactivate") == "inactive"
    inactive = {**active, "active": False}
    for action in ("update", "deactivate"):
        with pytest.raises(Conflict):
            domain.next_state(inactive, action)


def test_stale_version_is_a_conflict_naming_the_field_not_the_versions():
    with pytest.raises(Conflict) as raised:
        domain.require_version({**document(), "version": 3}, 271828)
    assert raised.value.field == "expectedVersion"
    assert "271828" not in raised.value.message and "3" not in raised.value.message


@pytest.mark.parametrize("action, actor, point_id, new_seat, allowed", [
    ("register", {"role": "admin"}, None, None, True),
    ("register", {"role": "municipality", "municipality": "GM0363"}, None, None, True),
    ("register", {"role": "municipality", "municipality": "GM0344"}, None, None, False),
    ("register", {"role": "support_point", "support_point": "p1"}, None, None, False),
    ("register", {"role": "partner"}, None, None, False),
    ("update", {"role": "support_point", "support_point": "p1"}, "p1", "GM0363", True),
    ("update", {"role": "support_point", "support_point": "p1"}, "p2", "GM0363", False),
    ("update", {"role": "support_point", "support_point": "p1"}, "p1", "GM0344", False),
    ("update", {"role": "municipality", "municipality": "GM0363"}, "p1", "GM0344", False),
    ("update", {"role": "admin"}, "p1", "GM0344", True),
    ("deactivate", {"role": "municipality", "municipality": "GM0363"}, "p1", None, True),
    ("deactivate", {"role": "caregiver"}, "p1", None, False),
    ("deactivate", None, "p1", None, False),
])
def test_authorisation_table(action, actor, point_id, new_seat, allowed):
    check = lambda: domain.may_make(action, actor, "GM0363", point_id, new_seat)  # noqa: E731
    if allowed:
        check()
    else:
        with pytest.raises(Forbidden):
            check()


def test_history_records_old_and_new_values_and_only_role_and_subject():
    old = document()
    new = domain.updated_support_point(old, domain.parse_support_point(
        point_input(name="Steunpunt Zuid", phone="020 1234567")), NOW)
    entry = domain.history_entry(new, domain.WORKFLOW.step("active", "update"), old,
                                 {"sub": "u1", "role": "municipality", "municipality": "GM0363"},
                                 NOW)
    assert entry["by"] == {"role": "municipality", "sub": "u1"}
    assert (entry["from"], entry["to"], entry["action"]) == ("active", "active", "update")
    assert {c["field"]: (c["old"], c["new"]) for c in entry["changes"]} == {
        "name": ("Steunpunt Noord", "Steunpunt Zuid"), "phone": (None, "020 1234567")}
    assert entry["version"] == 2


def test_the_history_view_names_each_step_as_before():
    first = document()
    entries = [domain.history_entry(first, domain.WORKFLOW.step(None, "register"), None,
                                    {"sub": "u1", "role": "admin"}, NOW)]
    view = domain.history_view(entries)
    assert view[0]["change"] == "registered"
    assert (view[0]["actor_role"], view[0]["actor_sub"], view[0]["version"]) == ("admin", "u1", 1)
    assert view[0]["at"] == NOW.isoformat()


def test_an_entry_stored_before_the_kit_takes_its_shape():
    stored = {"_id": "h1", "support_point_id": "p1", "version": 3, "at": NOW,
              "change": "deactivated", "actor": {"role": "municipality", "sub": "u1"},
              "changes": [{"field": "active", "old": True, "new": False}], "reason": "closed"}
    entry = domain.earlier_history_entry(stored)
    assert entry == {"_id": "h1", "support_point_id": "p1", "version": 3, "at": NOW,
                     "changes": stored["changes"], "reason": "closed", "from": "active",
                     "to": "inactive", "action": "deactivate",
                     "by": {"role": "municipality", "sub": "u1"}}
    assert domain.history_view([entry])[0]["change"] == "deactivated"


def test_cursor_round_trip_and_garbage():
    key = ("steunpunt é", "abc-1")
    assert search.decode_cursor(search.encode_cursor(key)) == key
    for garbage in ("nonsense", "", "e30", search.encode_cursor(("a",))[:-2]):
        with pytest.raises(BadUserInput) as raised:
            search.decode_cursor(garbage)
        assert raised.value.field == "after"


def test_haversine_amsterdam_utrecht():
    assert 34 < search.haversine_km((52.374557, 4.896035), (52.088329, 5.115990)) < 36


def _random_index(count, seed):
    rng = random.Random(seed)
    areas = [{"_id": str(1000 + i), "municipality_code": f"GM{i % 40:04d}",
              "lat": rng.uniform(50.8, 53.4), "lon": rng.uniform(3.4, 7.1)} for i in range(300)]
    points = []
    for n in range(count):
        area = rng.choice(areas)
        points.append({"_id": f"p{n:04d}", "name": f"Steunpunt {rng.randint(0, 50)}",
                       "serves_municipality_codes": [area["municipality_code"]],
                       "areas": rng.sample(["INFORMATION", "EDUCATION", "RESPITE_CARE"], 2),
                       "active": rng.random() > 0.1,
                       "address": {"postcode": f"{area['_id']} AB"}})
    return search.SearchIndex(areas, points), areas, points


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_nearest_equals_brute_force(seed):
    index, areas, points = _random_index(400, seed)
    centroid = {a["_id"]: (a["lat"], a["lon"]) for a in areas}
    for origin in random.Random(seed).sample(areas, 15):
        for area, limit in ((None, 5), ("EDUCATION", 12)):
            expected = sorted(
                (search.haversine_km(centroid[origin["_id"]],
                                     centroid[p["address"]["postcode"][:4]]),
                 (p["name"].casefold(), p["_id"]))
                for p in points if p["active"] and (area is None or area in p["areas"]))
            got = index.nearest(origin["_id"], area, limit)
            assert [pid for _, pid in got] == [key[1] for _, key in expected[:limit]]


def test_search_pages_cover_every_match_once_in_name_order():
    index, _, points = _random_index(300, 7)
    code = points[0]["serves_municipality_codes"][0]
    wanted = sorted((p["name"].casefold(), p["_id"]) for p in points
                    if p["active"] and code in p["serves_municipality_codes"])
    seen, after = [], None
    while True:
        page, total, after = index.search([code], first=3, after=after)
        assert total == len(wanted)
        seen += page
        if after is None:
            break
    assert seen == wanted
    assert index.search([code, "GM9999"])[1] == 0


def test_index_follows_changes():
    index = search.SearchIndex(AREAS)
    created = {**document(), "_id": "p1"}
    index.put(created)
    assert index.search(["GM0363"])[1] == 1
    index.put({**created, "active": False})
    assert index.search(["GM0363"])[1] == 0
    assert index.search(["GM0363"], include_inactive=True)[1] == 1
    assert index.nearest("3511 AA") == []


def test_unknown_postcode_area_is_bad_input():
    index = search.SearchIndex(AREAS)
    for postcode in ("1099", "99", "1012 A", "8765 QQ"):
        with pytest.raises(BadUserInput) as raised:
            index.area_of(postcode)
        assert raised.value.field == "postcode"
        assert postcode[:4] not in raised.value.message   # never the client's value


def test_pc4_rows_are_checked():
    good = {"pc4": "1012", "gemeentecode": "GM0363", "woonplaats": "Amsterdam",
            "latitude": "52.374557", "longitude": "4.896035"}
    assert domain.pc4_row(good, {"GM0363"})["lat"] == 52.374557
    for changes, reason in (({"pc4": "012"}, "pc4"), ({"gemeentecode": "GM0344"}, "GM0344"),
                            ({"latitude": "10"}, "outside"), ({"longitude": "x"}, "number")):
        with pytest.raises(ValueError, match=reason):
            domain.pc4_row({**good, **changes}, {"GM0363"})


def test_import_rows_and_their_key():
    row = {"external_id": "", "name": " Steunpunt  Noord ", "kind": "local",
           "municipality_code": "GM0363", "serves_municipality_codes": "GM0344; ",
           "street": "Dam", "house_number": "1", "postcode": "1012ab", "city": "Amsterdam",
           "areas": "information;respite_care"}
    data, external_id = domain.support_point_row(row)
    point = domain.parse_support_point(data, field="")
    assert point.areas == ["INFORMATION", "RESPITE_CARE"] and external_id is None
    assert domain.import_key(point) == "np:steunpunt noord|1012 AB"
    assert domain.import_key(point, "X-1") == "id:X-1"
    with pytest.raises(BadUserInput) as raised:
        domain.parse_support_point(domain.support_point_row({**row, "house_number": ""})[0], "")
    assert domain.rejection(7, raised.value) == {"row": 7, "column": "house_number",
                                                 "reason": "must not be empty"}
