"""Reference data and bulk support point imports, as the commands run them: batches over
RPC, reports of rejected rows, idempotent when run again."""
import csv

import pytest

from ops import cli, reference
from tests.support import eventually, support_point_count

SUPPORT_POINT_COLUMNS = ["external_id", "name", "kind", "municipality_code",
                         "serves_municipality_codes", "street", "house_number", "postcode",
                         "city", "phone", "email", "website", "areas"]


def write_csv(path, columns, rows):
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


def support_point_row(**changes):
    row = {"external_id": "", "name": "Steunpunt Mantelzorg Oldambt", "kind": "LOCAL",
           "municipality_code": "GM1895", "serves_municipality_codes": "",
           "street": "Raadhuisplein", "house_number": "1", "postcode": "9671ck",
           "city": "Winschoten", "phone": "0597-48 20 00", "email": "",
           "website": "https://example.org/oldambt", "areas": "INFORMATION;RESPITE_CARE"}
    row.update(changes)
    return row


def test_reference_import_is_idempotent(rpc, municipalities, reference_data):
    first = reference.import_reference(rpc, reference_data)
    assert first["municipalities"]["rejected"] == [] and first["pc4_areas"]["rejected"] == []
    again = reference.import_reference(rpc, reference_data)
    assert again["municipalities"] == {"imported": 0, "unchanged": 342, "rejected": []}
    assert again["pc4_areas"] == {"imported": 0, "unchanged": 4067, "rejected": []}


def test_pc4_rows_that_cannot_be_used_are_reported(rpc, municipalities, reference_data, tmp_path):
    rows = list(csv.DictReader(open(reference_data / "pc4.csv", encoding="utf-8")))
    columns = list(rows[0])
    amsterdam = next(r for r in rows if r["pc4"] == "1012")
    path = write_csv(tmp_path / "pc4.csv", columns, [
        amsterdam,
        {**amsterdam, "pc4": "12"},
        {**amsterdam, "gemeentecode": "GM9990"},
        {**amsterdam, "latitude": "48.1"},
        {**amsterdam, "longitude": ""},
    ])
    report = reference.import_pc4_areas(rpc, path)
    assert report["unchanged"] == 1 and report["imported"] == 0
    assert [(r["row"], r["reason"].split(" ")[0]) for r in report["rejected"]] == [
        (3, "pc4"), (4, "gemeentecode"), (5, "latitude"), (6, "longitude")]


def test_bulk_import_reports_rejected_rows_and_is_idempotent(rpc, gql, municipalities, tmp_path):
    rows = [
        support_point_row(),
        support_point_row(name="Mantelzorg Pekela", municipality_code="GM0765",
                          postcode="9665 AA", city="Oude Pekela", external_id="PEK-1"),
        support_point_row(name="Zonder postcode", postcode="96711"),
        support_point_row(name="Onbekende gemeente", municipality_code="GM9991"),
        support_point_row(name="Verkeerd gebied", areas="INFORMATION;TUINIEREN"),
        support_point_row(name="Regionaal Oost-Groningen", kind="regional",
                          serves_municipality_codes="GM0765;GM1950", external_id="REG-1"),
    ]
    path = write_csv(tmp_path / "points.csv", SUPPORT_POINT_COLUMNS, rows)
    before = support_point_count(gql)
    report = reference.import_support_points(rpc, path)
    assert (report["registered"], report["updated"], report["unchanged"]) == (3, 0, 0)
    assert [(r["row"], r["column"]) for r in report["rejected"]] == [
        (4, "postcode"), (5, "municipality_code"), (6, "areas")]
    # the row and column name it; the reason says the rule, never the value
    assert report["rejected"][1]["reason"] == "not a municipality of the CBS list"
    assert support_point_count(gql) == before + 3

    again = reference.import_support_points(rpc, path)
    assert (again["registered"], again["updated"], again["unchanged"]) == (0, 0, 3)
    assert support_point_count(gql) == before + 3

    rows[1]["phone"] = "0597-61 75 55"     # the partner corrects one row, keyed by its id
    rows[1]["name"] = "Mantelzorg Pekela en omstreken"
    report = reference.import_support_points(
        rpc, write_csv(tmp_path / "points2.csv", SUPPORT_POINT_COLUMNS, rows))
    assert (report["registered"], report["updated"], report["unchanged"]) == (0, 1, 2)
    page = rpc.registry.search_support_points(municipality_code="GM0765")
    pekela = next(p for p in page["items"] if p["name"] == "Mantelzorg Pekela en omstreken")
    assert (pekela["version"], pekela["phone"]) == (2, "0597-61 75 55")
    history = rpc.registry.support_point_history(pekela["id"], {"role": "admin", "sub": "t"})
    assert [h["change"] for h in history] == ["registered", "updated"]
    assert (history[0]["actor_role"], history[0]["actor_sub"]) == ("admin", "import")
    regional = next(p for p in page["items"] if p["name"] == "Regionaal Oost-Groningen")
    assert regional["serves_municipality_codes"] == ["GM0765", "GM1895", "GM1950"]


def test_a_municipality_may_import_only_its_own_points(rpc, municipalities, tmp_path):
    path = write_csv(tmp_path / "own.csv", SUPPORT_POINT_COLUMNS, [
        support_point_row(name="Eigen punt Westerwolde", municipality_code="GM1950",
                          postcode="9561 AA", city="Ter Apel"),
        support_point_row(name="Punt van de buren", municipality_code="GM1895")])
    report = reference.import_support_points(
        rpc, path, {"role": "municipality", "municipality": "GM1950", "sub": "staff"})
    assert report["registered"] == 1
    assert [(r["row"], r["column"]) for r in report["rejected"]] == [(3, "row")]
    assert "own municipality" in report["rejected"][0]["reason"]


def test_demo_seed_imports_the_national_data_and_adds_nothing_when_run_again(
        rpc, gql, municipalities, monkeypatch, capsys):
    monkeypatch.delenv("MANTELZORG_REFERENCE_DIR", raising=False)
    admin = {"sub": "test", "role": "admin"}
    stock = rpc.campaign.bag_stock(admin)
    cli.seed(rpc)
    count = support_point_count(gql)
    seeded = rpc.campaign.bag_stock(admin)
    assert seeded["printed"] == stock["printed"] + cli.FIRST_PRINT_RUN == stock["printed"] + 50_000
    cli.seed(rpc)
    assert support_point_count(gql) == count
    assert rpc.campaign.bag_stock(admin) == seeded     # the first print run is added once
    output = capsys.readouterr().out
    assert f"(from {reference.NATIONAL_DIR})" in output
    assert "demo support points: 0 registered, 0 updated, 8 unchanged, 0 rejected" in output
    seats = {row["municipality_code"] for row in
             reference.read_rows(reference.DEMO_DIR / "support_points.csv")}
    assert len(seats) >= 5
    for seat in seats:
        assert eventually(lambda seat=seat: rpc.registry.search_support_points(
            municipality_code=seat)["total"] >= 1)
    nearest = rpc.registry.nearest_support_points("1012 AB", None, 1)
    assert nearest[0]["municipality_code"] == "GM0363"


@pytest.mark.parametrize("name", ["municipalities.csv", "pc4.csv", "support_points.csv"])
def test_demo_files_have_the_documented_columns(name):
    columns = list(reference.read_rows(reference.DEMO_DIR / name)[0])
    expected = {"municipalities.csv": ["gemeentecode", "gemeentenaam", "provincie",
                                       "inwoners_2023"],
                "pc4.csv": ["pc4", "gemeentecode", "woonplaats", "latitude", "longitude"],
                "support_points.csv": SUPPORT_POINT_COLUMNS[1:]}[name]
    assert set(expected) <= set(columns)
