"""Reading the reference and demo CSV files that the commands send to the services."""
import csv
from pathlib import Path

DEMO_DIR = Path(__file__).parent / "demo"
BATCH = 200


def read_rows(path):
    with open(path, newline="", encoding="utf-8-sig") as handle:
        return list(csv.DictReader(handle))


def batches(rows, size=BATCH):
    for start in range(0, len(rows), size):
        yield start, rows[start:start + size]


def import_municipalities(rpc, path):
    """Sends municipalities.csv to the registry in batches; returns one combined report
    whose rejected rows carry their line number in the file."""
    report = {"imported": 0, "unchanged": 0, "rejected": []}
    for start, chunk in batches(read_rows(path)):
        part = rpc.registry.import_municipalities(chunk)
        report["imported"] += part["imported"]
        report["unchanged"] += part["unchanged"]
        report["rejected"] += [{**r, "row": r["row"] + start} for r in part["rejected"]]
    return report


def support_point_input(row):
    """A row of the support point CSV format as the registry's RPC input."""
    split = lambda value: [v.strip() for v in (value or "").split(";") if v.strip()]  # noqa: E731
    return {
        "name": row.get("name", ""), "kind": row.get("kind", ""),
        "municipalityCode": row.get("municipality_code", ""),
        "servesMunicipalityCodes": split(row.get("serves_municipality_codes")),
        "address": {"street": row.get("street", ""), "houseNumber": row.get("house_number", ""),
                    "postcode": row.get("postcode", ""), "city": row.get("city", "")},
        "phone": row.get("phone") or None, "email": row.get("email") or None,
        "website": row.get("website") or None, "areas": split(row.get("areas")),
    }
