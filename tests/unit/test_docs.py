"""docs/events.md names every event of the catalogue with its version and consumers."""
from pathlib import Path

from common.events import CATALOGUE, SUBSCRIPTIONS

DOC = (Path(__file__).resolve().parents[2] / "docs" / "events.md").read_text()


def test_every_event_type_is_documented_with_its_version_and_consumers():
    rows = {line.split("|")[1].strip().strip("`"): line for line in DOC.splitlines()
            if line.startswith("| `")}
    for name, kind in CATALOGUE.items():
        assert name in rows, f"{name} is missing in docs/events.md"
        cells = [c.strip() for c in rows[name].split("|")]
        assert cells[2] == str(kind.version) and cells[3] == kind.source
        consumers = sorted({s.consumer for s in SUBSCRIPTIONS if s.event == name})
        assert sorted(c.strip() for c in cells[4].split(",") if c.strip() != "—") == consumers
