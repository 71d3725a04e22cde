"""deploy/prometheus: the configuration and rules pass promtool's checks, and the unit tests of
the rules show every alert firing on a series that should fire it and silent on one that
should not."""
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from ops.platform import PROCESSES, metrics_address
from tests.support import exported_metric_names, promql_metric_names

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
RULE_FILES = sorted((PROMETHEUS_DIR / "rules").glob("*.yml"))
RULE_TESTS = sorted((PROMETHEUS_DIR / "tests").glob("*.test.yml"))


def load(path):
    return yaml.safe_load(path.read_text())


def alert_names():
    return [rule["alert"] for path in RULE_FILES for group in load(path)["groups"]
            for rule in group["rules"] if "alert" in rule]


def promtool(*arguments):
    tool = shutil.which("promtool")
    if tool is None:
        pytest.fail("promtool is missing: `make test` installs Debian's prometheus package")
    done = subprocess.run([tool, *arguments], cwd=PROMETHEUS_DIR, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_the_configuration_is_valid():
    assert "SUCCESS" in promtool("check", "config", "prometheus.yml")


def test_the_rules_are_valid():
    promtool("check", "rules", *[str(path) for path in RULE_FILES])


def test_the_rules_pass_their_unit_tests():
    promtool("test", "rules", *[str(path) for path in RULE_TESTS])


def test_every_alert_is_shown_firing_and_silent():
    firing, silent = set(), set()
    for path in RULE_TESTS:
        for case in load(path)["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else silent).add(check["alertname"])
    names = alert_names()
    assert len(names) == len(set(names))
    assert sorted(set(names) - firing) == [], "alerts never shown firing"
    assert sorted(set(names) - silent) == [], "alerts never shown silent"


def test_every_process_is_scraped_with_its_name():
    config = load(PROMETHEUS_DIR / "prometheus.yml")
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "mantelzorg")
    labelled = {c["labels"]["process"]: c["targets"] for c in job["static_configs"]}
    # on one host each process is reached by its name, at the port it serves metrics on
    ports = {p.name: metrics_address(p, {}).rsplit(":", 1)[1] for p in PROCESSES}
    assert labelled == {name: [f"{name}:{port}"] for name, port in ports.items()}


def test_the_rules_name_metrics_that_exist():
    """Platform metrics, series recorded before, whether a target answered (up), and the
    queue metrics of RabbitMQ's exporter."""
    known = exported_metric_names() | {"up"}
    for path in sorted(RULE_FILES, key=lambda p: p.name != "recording.yml"):
        for group in load(path)["groups"]:
            for rule in group["rules"]:
                names = set(promql_metric_names(rule["expr"]))
                unknown = {n for n in names - known if not n.startswith("rabbitmq_detailed_queue_")}
                assert names and not unknown, (rule.get("alert") or rule["record"], unknown)
                if "record" in rule:
                    known.add(rule["record"])


def test_every_alert_says_in_the_operations_doc_what_it_means_and_what_to_do():
    doc = (ROOT / "docs" / "operations.md").read_text()
    sections = dict(re.findall(r"^### (\w+)\n\n(.+?)(?=^#)", doc, re.MULTILINE | re.DOTALL))
    for name in alert_names():
        assert len(sections.get(name, "").split()) >= 25, f"{name} is not explained"
