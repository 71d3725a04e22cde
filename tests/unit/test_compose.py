"""docker-compose.yml: valid by the compose specification's JSON schema, the whole stack with
health checks and named volumes, one non-root image for every process, and secrets only
from the uncommitted .env whose template is .env.example."""
import json
import re
from importlib import resources
from pathlib import Path

import jsonschema
import yaml

from ops.platform import PROCESSES

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_TEXT = (ROOT / "docker-compose.yml").read_text()
COMPOSE = yaml.safe_load(COMPOSE_TEXT)
SERVICES = COMPOSE["services"]
PLATFORM = [process.name for process in PROCESSES] + ["declare-queues", "broker-users"]
SECRET = re.compile(r"PASSWORD|SECRET|_KEY\b")


def compose_schema():
    vendored = resources.files("check_jsonschema") / "builtin_schemas" / "vendor" / "compose-spec.json"
    return json.loads(vendored.read_text())


def test_valid_by_the_compose_specification():
    schema = compose_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = sorted(validator.iter_errors(COMPOSE), key=lambda e: list(e.path))
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors]


def test_the_whole_stack_is_there():
    assert set(SERVICES) == set(PLATFORM) | {"rabbitmq", "mongo", "prometheus", "grafana"}
    assert SERVICES["rabbitmq"]["image"].endswith("-management")
    assert "--replSet" in SERVICES["mongo"]["command"]
    for process in PROCESSES:
        assert "MONGO_URI" in SERVICES[process.name]["environment"]
        assert "replicaSet=rs0" in SERVICES[process.name]["environment"]["MONGO_URI"]


def test_every_process_runs_from_one_non_root_image_with_a_read_only_root():
    images = {SERVICES[name]["image"] for name in PLATFORM}
    assert len(images) == 1
    for name in PLATFORM:
        service = SERVICES[name]
        assert service["build"] == "." and service["read_only"] is True
        assert not service["user"].startswith("0") and service["user"].split(":")[0] != "root"
    assert "USER 10001" in (ROOT / "Dockerfile").read_text()


def test_every_container_that_keeps_running_has_a_health_check():
    for name, service in SERVICES.items():
        if service.get("restart") == "no":      # a one-shot step the others wait for
            assert all(SERVICES[other]["depends_on"][name]["condition"] ==
                       "service_completed_successfully"
                       for other in SERVICES if name in SERVICES[other].get("depends_on", {}))
            continue
        assert service["healthcheck"]["test"], name
    for process in PROCESSES:
        assert SERVICES[process.name]["healthcheck"]["test"] == [
            "CMD", "mantelzorg", "probe", process.name]


def test_data_lives_in_named_volumes():
    declared = set(COMPOSE["volumes"])
    for name, mount in (("rabbitmq", "/var/lib/rabbitmq"), ("mongo", "/data/db"),
                        ("prometheus", "/prometheus"), ("grafana", "/var/lib/grafana")):
        volumes = dict(v.split(":")[:2][::-1] for v in SERVICES[name]["volumes"])
        assert volumes[mount] in declared, name
    for service in SERVICES.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert source.startswith(("./deploy/", "./tls")) or source in declared, volume


def test_prometheus_and_grafana_get_the_deploy_files():
    assert "./deploy/prometheus:/etc/prometheus:ro" in SERVICES["prometheus"]["volumes"]
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in SERVICES["grafana"]["volumes"]


def test_secrets_come_only_from_the_uncommitted_env_file():
    used = set(re.findall(r"\$\{(\w+)", COMPOSE_TEXT))
    example = dict(line.split("=", 1) for line in (ROOT / ".env.example").read_text().splitlines()
                   if line and not line.startswith("#"))
    secrets = {name for name in used if SECRET.search(name)}
    assert secrets and secrets <= set(example), secrets - set(example)
    assert all(example[name] == "" for name in secrets), "the template holds no secret"
    # the ones the stack cannot run without stop `docker compose` when unset
    for name in ("RABBITMQ_ADMIN_PASSWORD", "MONGO_ROOT_PASSWORD", "GRAFANA_ADMIN_PASSWORD",
                 "DECLARATION_MANTELZORG_DATA_KEY", "DECLARATION_MANTELZORG_LOOKUP_KEY",
                 "DECLARATION_MANTELZORG_SIGNING_KEY", "TRAVEL_COSTS_MANTELZORG_DATA_KEY",
                 "GATEWAY_MANTELZORG_SESSION_KEY", "REGISTRY_RABBITMQ_PASSWORD",
                 "REGISTRY_MONGO_PASSWORD"):
        assert f"{name}:?" in COMPOSE_TEXT, name
    assert ".env" in (ROOT / ".gitignore").read_text().split()
    assert "guest" not in COMPOSE_TEXT


def test_the_broker_and_the_database_are_reached_over_tls_only():
    """RabbitMQ listens on TLS alone, MongoDB requires TLS; every process connects with the
    authority of ./tls (mantelzorg new-tls-certificates) and checks the server's name."""
    tls_config = COMPOSE["configs"]["rabbitmq-tls"]["content"]
    assert "listeners.tcp = none" in tls_config and "listeners.ssl.default = 5671" in tls_config
    assert {"source": "rabbitmq-tls", "target": "/etc/rabbitmq/conf.d/20-tls.conf"} in \
        SERVICES["rabbitmq"]["configs"]
    command = SERVICES["mongo"]["command"]
    assert command[command.index("--tlsMode") + 1] == "requireTLS"
    assert "--tls --tlsCAFile" in " ".join(SERVICES["mongo"]["healthcheck"]["test"])
    for name in PLATFORM:
        environment = SERVICES[name]["environment"]
        assert environment["AMQP_URI"].startswith("amqps://") and "@rabbitmq:5671/" in \
            environment["AMQP_URI"], name
        options = yaml.safe_load(environment["AMQP_SSL"])
        assert options["cert_reqs"] == 2 and options["server_hostname"] == "rabbitmq", name
        mounted = {volume.split(":")[1] for volume in SERVICES[name]["volumes"]}
        assert options["ca_certs"] in mounted, name
        assert environment["MONGO_TLS_CA_FILE"] == options["ca_certs"]
    assert "tls/" in (ROOT / ".gitignore").read_text().split()
