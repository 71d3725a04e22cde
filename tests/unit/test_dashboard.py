"""The Grafana dashboard: every query names a metric the platform exports (or a RED series
its recording rules make of them), and it is provisioned against the provisioned data source."""
import json
from pathlib import Path

import yaml

from tests.support import DASHBOARD, dashboard_queries, exported_metric_names, promql_metric_names

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "deploy" / "grafana"
RECORDING = ROOT / "deploy" / "prometheus" / "rules" / "recording.yml"
# Series Prometheus makes itself: whether a target answered, and the alerts' states.
PROMETHEUS_OWN = {"up", "ALERTS"}


def recorded_names():
    return {rule["record"] for group in yaml.safe_load(RECORDING.read_text())["groups"]
            for rule in group["rules"]}


def test_every_query_names_an_exported_metric():
    known = exported_metric_names() | recorded_names() | PROMETHEUS_OWN
    queries = dashboard_queries()
    assert len(queries) > 20
    for query in queries:
        names = promql_metric_names(query)
        assert names and set(names) <= known, (query, set(names) - known)


def test_red_per_service_and_the_business_metrics_are_on_it():
    named = {name for query in dashboard_queries() for name in promql_metric_names(query)}
    assert {"service:mantelzorg_entrypoint_requests:rate5m",
            "service:mantelzorg_entrypoint_error_ratio:rate5m",
            "service:mantelzorg_entrypoint_duration_seconds:p99_5m",
            "mantelzorg_declarations_issued_total", "mantelzorg_travel_claims_paid_total",
            "mantelzorg_travel_paid_euros_total", "mantelzorg_bags_shipped_total",
            "mantelzorg_events_handled_total"} <= named


def test_the_dashboard_uses_the_provisioned_data_source():
    source, = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml")
                             .read_text())["datasources"]
    dashboard = json.loads(DASHBOARD.read_text())
    used = {panel["datasource"]["uid"] for panel in dashboard["panels"] if "datasource" in panel}
    used |= {t["datasource"]["uid"] for p in dashboard["panels"] for t in p.get("targets", [])}
    assert used == {source["uid"]}
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_the_dashboard_folder_is_provisioned_where_compose_mounts_it():
    provider, = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "mantelzorg.yml")
                               .read_text())["providers"]
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./deploy/grafana/dashboards:{provider['options']['path']}:ro" in mounts
