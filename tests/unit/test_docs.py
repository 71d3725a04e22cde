"""docs/events.md names every event of the catalogue with its version and consumers;
docs/architecture.md names every module of common/ and of the services' rooms."""
import re
from pathlib import Path

from common.events import CATALOGUE, SUBSCRIPTIONS

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "events.md").read_text()
ARCHITECTURE = (ROOT / "docs" / "architecture.md").read_text()


def test_every_event_type_is_documented_with_its_version_and_consumers():
    rows = {line.split("|")[1].strip().strip("`"): line for line in DOC.splitlines()
            if line.startswith("| `")}
    for name, kind in CATALOGUE.items():
        assert name in rows, f"{name} is missing in docs/events.md"
        cells = [c.strip() for c in rows[name].split("|")]
        assert cells[2] == str(kind.version) and cells[3] == kind.source
        consumers = sorted({s.consumer for s in SUBSCRIPTIONS if s.event == name})
        assert sorted(c.strip() for c in cells[4].split(",") if c.strip() != "—") == consumers



def _between(text, start, end):
    return text[text.index(start):text.index(end)]


def _modules_named(text):
    return set(re.findall(r"`([a-z_]+\.(?:py|yml))`", text))


def test_the_table_of_common_names_each_of_its_modules():
    table = _between(ARCHITECTURE, "`common/` holds what all share", "## How a service is laid out")
    present = {path.name for path in (ROOT / "common").glob("*.py") if path.name != "__init__.py"}
    assert _modules_named(table) == present


def test_the_service_layout_names_each_module_a_service_has():
    layout = _between(ARCHITECTURE, "## How a service is laid out", "The walls that hold")
    present = {path.name for service in (ROOT / "services").iterdir() if service.is_dir()
               for path in service.iterdir()
               if path.suffix in (".py", ".yml") and path.name != "__init__.py"}
    assert _modules_named(layout) == present


def test_every_file_the_docs_name_is_there():
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    named = {(doc.name, path) for doc in docs
             for path in re.findall(r"\b((?:common|services|gateway|ops|bench|tests|deploy)"
                                    r"/[\w./-]*\w\.(?:py|yml|yaml|html|md|json|graphql))",
                                    doc.read_text())}
    assert sorted(named_path for named_path in named if not (ROOT / named_path[1]).exists()) == []
