"""Each process gets only its own secrets, in Kubernetes and in compose alike: its own
RabbitMQ user, its own MongoDB user and the keys common/crypto.py PROCESS_KEYS gives it, each
its own. The fund and the campaign never get the declaration's signing key, data key or lookup
key (a compromised campaign pod could otherwise mint declarations that desks accept offline);
no process gets the RabbitMQ administrator or the MongoDB root."""
import os
import re

import pytest

from common import crypto
from common import config as settings
from ops.platform import PROCESSES
from tests.unit.test_compose import COMPOSE_TEXT, SERVICES as COMPOSE
from tests.unit.test_k8s import TARGETS, k8s_name, objects, rendered, secret_references

NAMES = [process.name for process in PROCESSES]
# What a key setting brings along: the signing key's id and the public keys of earlier ones.
COMPANIONS = {crypto.SIGNING_KEY: {"MANTELZORG_SIGNING_KEY_ID", "MANTELZORG_SIGNING_PUBLIC_KEYS"}}
# The gateway's own: the OpenID Connect clients of the caregivers and of the staff.
SIGN_IN = {f"MANTELZORG_{who}OIDC_{setting}" for who in ("", "STAFF_")
           for setting in ("ISSUER", "CLIENT_ID", "CLIENT_SECRET", "REDIRECT_URL")} | {
    "MANTELZORG_OIDC_BSN_CLAIM"} | {f"MANTELZORG_STAFF_OIDC_{claim}_CLAIM"
                                    for claim in ("ROLE", "MUNICIPALITY", "SUPPORT_POINT", "NAME")}
# The notifications service's own: its mail server (in a Secret of that name).
MAIL = {"MANTELZORG_SMTP_URL", "MANTELZORG_MAIL_FROM"}
# The key the gateway signs its calls with (common/calls.py); the services hold only the
# public keys, which are no secret.
CALLS = {"MANTELZORG_GATEWAY_CALL_KEY"}
OTHER_SECRETS = {"gateway": SIGN_IN | CALLS, "notifications": MAIL}


def keys_of(process):
    """The key settings ``process`` needs, with what comes along."""
    needed = set(crypto.PROCESS_KEYS[process])
    for key in list(needed):
        needed |= COMPANIONS.get(key, set())
    return needed | OTHER_SECRETS.get(process, set())


def test_the_table_names_every_process_and_gives_keys_only_where_data_is_kept():
    assert set(crypto.PROCESS_KEYS) == set(NAMES)
    # no personal data: only a data key, for the answers kept for retried requests
    assert crypto.PROCESS_KEYS["campaign"] == crypto.PROCESS_KEYS["registry"] == (
        crypto.DATA_KEY,)
    assert [name for name in NAMES if crypto.SIGNING_KEY in crypto.PROCESS_KEYS[name]] == \
        ["declaration"]


# --- Kubernetes --------------------------------------------------------------------------

def _secret_variables(container):
    """{variable: (Secret, key)} of what a container takes from Secrets; envFrom of a whole
    Secret is refused, since what it brings cannot be seen here."""
    assert not [source for source in container.get("envFrom", []) if "secretRef" in source], \
        container["name"]
    return {variable["name"]: (variable["valueFrom"]["secretKeyRef"]["name"],
                               variable["valueFrom"]["secretKeyRef"]["key"])
            for variable in container.get("env", [])
            if "secretKeyRef" in variable.get("valueFrom", {})}


@pytest.mark.parametrize("target", TARGETS)
def test_in_kubernetes_each_process_gets_its_own_secrets_and_no_other(target):
    deployments = objects(target, "Deployment")
    holders = {}
    for process in PROCESSES:
        name = k8s_name(process)
        spec = deployments[name]["spec"]["template"]["spec"]
        container, = spec["containers"]
        taken = _secret_variables(container)
        assert set(taken) == {"RABBITMQ_USERNAME", "RABBITMQ_PASSWORD", "MONGO_URI"} | \
            keys_of(process.name), name
        assert {secret for secret, _ in taken.values()} <= {
            f"rabbitmq-user-{name}", f"mongodb-{name}", f"mantelzorg-{name}"} | (
            {"mantelzorg-smtp"} if name == "notifications" else set()), name
        for variable, (secret, key) in taken.items():
            if secret == f"mantelzorg-{name}":
                assert key == variable
        for init in spec["initContainers"]:
            assert set(_secret_variables(init)) == {"RABBITMQ_USERNAME", "RABBITMQ_PASSWORD"}
        for secret, _ in taken.values():
            holders.setdefault(secret, set()).add(name)
    assert {secret: names for secret, names in holders.items() if len(names) > 1} == {}
    # the operator's tools hold no key of a process and no process's user; the toolbox the
    # operator's own key of signed calls
    tools = [*objects(target, "Job").values(), *objects(target, "CronJob").values(),
             deployments["ops"]]
    assert len(tools) == 3
    for document in tools:
        assert secret_references(document) <= {"rabbitmq-user-operator", "mongodb-backup",
                                               "mantelzorg-operator"}, \
            document["metadata"]["name"]
    assert "mantelzorg-keys" not in str(rendered(target))


# --- compose -----------------------------------------------------------------------------

def _env_references(service):
    """{variable: [.env names its value refers to]} of a compose service."""
    return {variable: re.findall(r"\$\{(\w+)", str(value))
            for variable, value in (service.get("environment") or {}).items()}


def test_in_compose_each_process_gets_its_own_secrets_and_no_other():
    holders = {}
    for process in PROCESSES:
        name, prefix = process.name, process.name.upper() + "_"
        references = _env_references(COMPOSE[name])
        secret = {variable: names for variable, names in references.items()
                  if any(re.search(r"PASSWORD|SECRET|KEY", n) and not n.endswith("_PUBLIC_KEY")
                         for n in names)}
        expected = {"AMQP_URI", "MONGO_URI"} | keys_of(name)
        if name == "gateway":   # development tokens for a trial on one host
            expected |= {"MANTELZORG_SESSION_KEY", "MANTELZORG_JWT_SECRET"}
        assert set(secret) <= expected and set(secret) >= expected - SIGN_IN - MAIL, name
        own_user = process.name.replace("_", "-")
        assert references["AMQP_URI"] == [f"{prefix}RABBITMQ_PASSWORD"]
        assert COMPOSE[name]["environment"]["AMQP_URI"].startswith(f"amqps://{own_user}:")
        assert references["MONGO_URI"] == [f"{prefix}MONGO_PASSWORD"]
        assert COMPOSE[name]["environment"]["MONGO_URI"].startswith(f"mongodb://{name}:")
        for variable in keys_of(name) & set(secret) - SIGN_IN - MAIL - CALLS:
            assert references[variable] == [prefix + variable], (name, variable)
        for names in secret.values():
            for env_name in names:
                holders.setdefault(env_name, set()).add(name)
    assert {n: who for n, who in holders.items() if len(who) > 1} == {}


def test_in_compose_only_the_broker_and_the_database_hold_their_administrators():
    for name, service in COMPOSE.items():
        used = {n for names in _env_references(service).values() for n in names}
        if "RABBITMQ_ADMIN_PASSWORD" in used:
            assert name in ("rabbitmq", "broker-users"), name
        if "MONGO_ROOT_PASSWORD" in used:
            assert name == "mongo", name
    assert "RABBITMQ_PASSWORD}" not in COMPOSE_TEXT and "${RABBITMQ_USER" not in COMPOSE_TEXT


def test_compose_makes_the_same_broker_users_as_kubernetes():
    permissions = {p["spec"]["userReference"]["name"] for p in objects("base", "Permission").values()}
    made = {variable.removeprefix("BROKER_PASSWORD_").lower().replace("_", "-")
            for variable in COMPOSE["broker-users"]["environment"]
            if variable.startswith("BROKER_PASSWORD_")}
    assert made == permissions - {"keda"}
    assert "./deploy/k8s/base/rabbitmq-users.yaml:/etc/mantelzorg/rabbitmq-users.yaml:ro" in \
        COMPOSE["broker-users"]["volumes"]
    health = COMPOSE_TEXT[COMPOSE_TEXT.index("mongo-health:"):]
    for process in PROCESSES:
        assert f'"{process.name}"' in health.split("\n", 20)[-1] or f'"{process.name}"' in health


# --- the processes hold to it ---------------------------------------------------------------

def test_a_process_starts_with_its_own_keys_alone(monkeypatch):
    monkeypatch.setenv("MANTELZORG_ENV", "production")
    for name in ("MANTELZORG_DATA_KEY", "MANTELZORG_LOOKUP_KEY", "MANTELZORG_SIGNING_KEY"):
        monkeypatch.delenv(name, raising=False)
    fund = {**os.environ, "MANTELZORG_DATA_KEY": crypto.new_data_key("k1"),
            "MANTELZORG_LOOKUP_KEY": crypto.new_lookup_key()}
    keys = crypto.Keys({"DATA_DIR": ":memory:"}, fund, needs=crypto.PROCESS_KEYS["travel_costs"])
    assert keys.signer is None and keys.hash("bsn", "x") and keys.cipher
    with pytest.raises(settings.SettingsError, match="MANTELZORG_DATA_KEY"):
        crypto.Keys({"DATA_DIR": ":memory:"}, dict(os.environ),
                    needs=crypto.PROCESS_KEYS["campaign"])
    campaign = crypto.Keys({"DATA_DIR": ":memory:"}, {
        **os.environ, "MANTELZORG_DATA_KEY": crypto.new_data_key("k1")},
        needs=crypto.PROCESS_KEYS["campaign"])
    assert campaign.cipher and (campaign.hash, campaign.signer) == (None, None)
    with pytest.raises(settings.SettingsError, match="MANTELZORG_SIGNING_KEY"):
        crypto.Keys({"DATA_DIR": ":memory:"}, fund, needs=crypto.PROCESS_KEYS["declaration"])
