"""Reading the reference and support point CSV files and sending them to the registry in
batches. The formats are described in the README ("Reference data and imports")."""
import csv
from pathlib import Path

DEMO_DIR = Path(__file__).parent / "demo"
# All 342 municipalities and 4,067 PC4 areas (Bron: CBS, CC BY 4.0); DEMO_DIR holds a sample.
NATIONAL_DIR = Path(__file__).parent / "reference_data"
BATCH = 200
IMPORTER = {"sub": "import", "role": "admin"}


def read_rows(path):
    with open(path, newline="", encoding="utf-8-sig") as handle:
        return list(csv.DictReader(handle))


def batches(rows, size=BATCH):
    for start in range(0, len(rows), size):
        yield start, rows[start:start + size]


def send_in_batches(call, path, *args):
    """Calls ``call(chunk, *args, first_row=n)`` per batch of the file's rows and adds up the
    reports; rejected rows carry their line number in the file (the header is line 1)."""
    report = {}
    for start, chunk in batches(read_rows(path)):
        part = call(chunk, *args, first_row=start + 2)
        for key, value in part.items():
            report[key] = report.get(key, [] if isinstance(value, list) else 0) + value
    report.setdefault("rejected", [])
    return report


def import_municipalities(rpc, path):
    return send_in_batches(rpc.registry.import_municipalities, path)


def import_pc4_areas(rpc, path):
    return send_in_batches(rpc.registry.import_pc4_areas, path)


def import_reference(rpc, folder):
    """municipalities.csv, then pc4.csv (whose rows name imported municipalities)."""
    folder = Path(folder)
    return {"municipalities": import_municipalities(rpc, folder / "municipalities.csv"),
            "pc4_areas": import_pc4_areas(rpc, folder / "pc4.csv")}


def import_support_points(rpc, path, actor=IMPORTER):
    return send_in_batches(rpc.registry.import_support_points, path, actor)


def summary(name, report):
    counts = ", ".join(f"{value} {key}" for key, value in report.items() if key != "rejected")
    return f"{name}: {counts}, {len(report['rejected'])} rejected"
