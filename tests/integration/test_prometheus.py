"""A real Prometheus server with the platform's configuration and rules scrapes every process
of the running platform; a declaration requested and issued through the gateway shows in its
RED metrics, the business metrics are there to query, and a parked event fires its alert."""
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import requests
import yaml
from kombu import Connection
from nameko.standalone.events import get_event_exchange

from common.publishing import publish
from ops.platform import PROCESSES, metrics_address
from tests.conftest import free_port
from tests.integration.test_declaration import AMSTERDAM, decide, request
from tests.support import dashboard_queries, eventually

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
BUSINESS_METRICS = ("mantelzorg_declarations_issued_total", "mantelzorg_travel_claims_paid_total",
                    "mantelzorg_travel_paid_euros_total", "mantelzorg_bags_shipped_total")
# Counters without labels: every process exports them at 0 before anything was paid.
UNLABELLED_BUSINESS_METRICS = ("mantelzorg_travel_claims_paid_total",
                               "mantelzorg_travel_paid_euros_total")


def scrape_configuration(platform):
    """The committed configuration, scraping the test platform's processes every second."""
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["rule_files"] = [str(PROMETHEUS_DIR / name) for name in config["rule_files"]]
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "mantelzorg")
    job["static_configs"] = [
        {"targets": [metrics_address(process, platform.environ)], "labels": {"process": process.name}}
        for process in PROCESSES]
    config["scrape_configs"] = [job]   # the test broker's own exporter is not scraped here
    return config


class PrometheusServer:
    def __init__(self, config, folder):
        self.config_file = folder / "prometheus.yml"
        self.config_file.write_text(yaml.safe_dump(config))
        self.storage = folder / "data"
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log = open(folder / "prometheus.log", "wb")
        self.process = None

    def start(self, timeout=30):
        self.process = subprocess.Popen(
            [shutil.which("prometheus"), f"--config.file={self.config_file}",
             f"--storage.tsdb.path={self.storage}",
             f"--web.listen-address={self.url.removeprefix('http://')}", "--log.level=warn"],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, "prometheus exited; see prometheus.log"
            try:
                if requests.get(f"{self.url}/-/ready", timeout=2).ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise TimeoutError("prometheus did not become ready")

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()

    def api(self, path, **params):
        answer = requests.get(f"{self.url}/api/v1/{path}", params=params, timeout=10).json()
        assert answer["status"] == "success", answer
        return answer["data"]

    def query(self, expression):
        """{frozenset(labels): value} of an instant query."""
        return {frozenset(s["metric"].items()): float(s["value"][1])
                for s in self.api("query", query=expression)["result"]}

    def total(self, expression):
        """The sum of an instant query's samples, None when it has none."""
        found = self.query(expression)
        return sum(found.values()) if found else None


@pytest.fixture(scope="module")
def prometheus(platform, tmp_path_factory):
    if shutil.which("prometheus") is None:
        pytest.fail("the prometheus server is missing: `make test` installs Debian's package")
    server = PrometheusServer(scrape_configuration(platform), tmp_path_factory.mktemp("prometheus"))
    server.start()
    try:
        assert eventually(lambda: all_targets_up(server), timeout=30), server.api("targets")
        yield server
    finally:
        server.stop()


def all_targets_up(server):
    targets = server.api("targets")["activeTargets"]
    return len(targets) == len(PROCESSES) and all(t["health"] == "up" for t in targets)


def test_every_process_is_scraped_and_up(prometheus):
    up = {dict(labels)["process"]: value
          for labels, value in prometheus.query('up{job="mantelzorg"}').items()}
    assert up == {process.name: 1.0 for process in PROCESSES}


def test_the_alert_and_recording_rules_load(prometheus):
    groups = prometheus.api("rules")["groups"]
    files = {Path(g["file"]).name for g in groups}
    assert files == {"recording.yml", "alerts.yml"}
    assert all(rule["health"] == "ok" for g in groups for rule in g["rules"]), groups
    committed = yaml.safe_load((PROMETHEUS_DIR / "rules" / "alerts.yml").read_text())
    alerts = {r["alert"] for g in committed["groups"] for r in g["rules"]}
    assert alerts == {r["name"] for g in groups for r in g["rules"] if r["type"] == "alerting"}


# One request's path: the gateway's HTTP entrypoint, the declaration service's RPCs, the
# event it publishes, and travel_costs handling that event.
CROSSING = {
    "gateway": 'mantelzorg_entrypoint_requests_total{job="mantelzorg", process="gateway", '
               'service="gateway", entrypoint="graphql", kind="http", outcome="success"}',
    "request": 'mantelzorg_entrypoint_requests_total{job="mantelzorg", process="declaration", '
               'entrypoint="request_declaration", kind="rpc", outcome="success"}',
    "decide": 'mantelzorg_entrypoint_requests_total{job="mantelzorg", process="declaration", '
              'entrypoint="decide_declaration", kind="rpc", outcome="success"}',
    "decide_duration": 'mantelzorg_entrypoint_duration_seconds_count{job="mantelzorg", '
                       'process="declaration", entrypoint="decide_declaration", kind="rpc"}',
    "published": 'mantelzorg_events_published_total{job="mantelzorg", process="declaration", '
                 'type="declaration.issued"}',
    "consumed": 'mantelzorg_entrypoint_requests_total{job="mantelzorg", process="travel_costs", '
                'entrypoint="on_declaration_changed", kind="event", outcome="success"}',
    "consumed_duration": 'mantelzorg_entrypoint_duration_seconds_count{job="mantelzorg", '
                         'process="travel_costs", entrypoint="on_declaration_changed", kind="event"}',
    "handled": 'mantelzorg_events_handled_total{job="mantelzorg", process="travel_costs", '
               'type="declaration.issued", outcome="handled"}',
    "issued": f'mantelzorg_declarations_issued_total{{job="mantelzorg", process="declaration", '
              f'municipality="{AMSTERDAM}"}}',
}


def test_a_declaration_through_gateway_and_two_services_shows_in_prometheus(
        prometheus, gql, known):
    before = {name: prometheus.total(query) or 0.0 for name, query in CROSSING.items()}
    requested = request(gql)
    issued = decide(gql, requested)
    assert issued["status"] == "ISSUED"   # its event reaches the fund: "consumed" below

    def grown():
        now = {name: prometheus.total(query) or 0.0 for name, query in CROSSING.items()}
        return now if all(now[name] > before[name] for name in CROSSING) else None

    after = eventually(grown, timeout=45, interval=0.5)
    assert after, {name: (before[name], prometheus.total(q)) for name, q in CROSSING.items()}
    assert after["gateway"] - before["gateway"] >= 2          # the request and the decision
    assert after["issued"] - before["issued"] >= 1
    # the recording rules turn them into RED per service
    for service in ("gateway", "declaration", "travel_costs"):
        assert eventually(lambda service=service: prometheus.total(
            f'service:mantelzorg_entrypoint_requests:rate5m{{service="{service}"}}'), timeout=20), service
    assert prometheus.total(
        'service:mantelzorg_entrypoint_error_ratio:rate5m{service="declaration"}') is not None


def test_the_business_metrics_are_exported_and_queryable(prometheus, platform):
    pages = {process.name: requests.get(f"http://{metrics_address(process, platform.environ)}/metrics",
                                        timeout=5).text for process in PROCESSES}
    for name in BUSINESS_METRICS:
        assert all(f"# TYPE {name} counter" in page for page in pages.values()), name
        # every target reported the metric to Prometheus, with or without samples yet
        metadata = prometheus.api("targets/metadata", metric=name)
        assert {m["target"]["process"] for m in metadata} == {p.name for p in PROCESSES}, name
        assert all(m["type"] == "counter" for m in metadata)
    for name in UNLABELLED_BUSINESS_METRICS:
        values = prometheus.query(f'{name}{{job="mantelzorg"}}')
        assert {dict(labels)["process"] for labels in values} == {p.name for p in PROCESSES}
        assert all(value >= 0 for value in values.values())
    # dead letters: every consumer's series exists from its start, at 0 or more
    dead = prometheus.query('mantelzorg_events_handled_total{job="mantelzorg", outcome="dead_lettered"}')
    assert {(dict(l)["service"], dict(l)["type"]) for l in dead} >= {
        ("travel_costs", "declaration.issued"), ("campaign", "municipality.imported"),
        ("declaration", "municipality.imported")}
    assert all(value >= 0 for value in dead.values())


def test_every_dashboard_query_runs(prometheus):
    for query in dashboard_queries():
        prometheus.api("query", query=query)     # an invalid query answers status "error"
    # the business panels show a number (0 before any traffic), not "no data"
    for name in UNLABELLED_BUSINESS_METRICS:
        assert prometheus.total(f'sum(increase({name}{{job="mantelzorg"}}[1h]))') is not None


def test_a_parked_event_fires_the_dead_letter_alert(prometheus, platform):
    firing = ('ALERTS{alertname="MantelzorgEventsDeadLettered", alertstate="firing", '
              'service="travel_costs", type="declaration.issued"}')
    counted = ('mantelzorg_events_handled_total{process="travel_costs", '
               'type="declaration.issued", outcome="dead_lettered"}')
    # scraped at least once before the event is parked, so that increase() sees it grow
    assert eventually(lambda: prometheus.total(counted) is not None, timeout=20)
    with Connection(platform.environ["AMQP_URI"]) as connection:
        publish(connection, {"event_id": str(uuid.uuid4()), "type": "declaration.issued",
                             "payload": {"not": "a declaration"}},
                get_event_exchange("declaration", {}), "declaration.issued", {})
    assert eventually(lambda: prometheus.total(firing), timeout=30, interval=0.5)
