"""The development store as a process of its own (MANTELZORG_STORE=process) and two
declaration processes on it: what one replica writes, the other reads."""
import os

import pytest

from ops import reference
from tests.conftest import running_platform, throwaway_vhost
from tests.integration.test_launcher import alive
from tests.support import eventually

MUNICIPALITY = "GM0363"
STAFF = {"sub": "replica-staff", "role": "municipality", "municipality": MUNICIPALITY,
         "support_point": None}
DECLARATIONS = 6
CHECKS_EACH = 4


@pytest.fixture(scope="module")
def replicated(tmp_path_factory):
    """On a virtual host of its own: on the run's shared one, the shared platform's services
    would take half of these calls (and refuse them, signed with another data folder's key)."""
    from common.topology import declare_topology

    with throwaway_vhost("replicas") as amqp_uri:
        declare_topology({"AMQP_URI": amqp_uri})
        with running_platform(amqp_uri, tmp_path_factory, MANTELZORG_STORE="process",
                              MANTELZORG_REPLICAS="declaration=2") as running:
            yield running


def served(platform, name, entrypoint):
    """Calls of ``entrypoint`` one process (or replica) answered successfully."""
    return sum(sample.value for sample in platform.metric_samples(name)
               if sample.name == "mantelzorg_entrypoint_requests_total"
               and sample.labels.get("entrypoint") == entrypoint
               and sample.labels.get("outcome") == "success")


def request(number):
    return {"municipalityCode": MUNICIPALITY,
            "caregiver": {"bsn": "999990019", "name": "Replica Mantelzorger",
                          "postcode": "1012 AB"},
            "careRecipient": {"name": f"Naaste {number}", "postcode": "1013 AA",
                              "relationship": "parent"},
            "hoursPerWeek": "12", "careSince": "2020-01-01", "purposes": ["PARKING_PERMIT"]}


def test_the_launcher_starts_one_store_and_no_service_embeds_its_own(replicated):
    store = replicated.children["store"]
    assert store.poll() is None
    data = replicated.environ["MANTELZORG_DATA_DIR"]
    assert os.path.isdir(os.path.join(data, "store"))
    assert not [name for name in os.listdir(data) if name.startswith("mantelzorg_")]
    assert os.path.exists(os.path.join(data, "keys", "data-key.json"))


def test_two_declaration_replicas_read_what_the_other_wrote(replicated):
    with replicated.rpc(timeout=30) as rpc:
        reference.import_municipalities(rpc, reference.DEMO_DIR / "municipalities.csv")

        def known():
            try:
                return rpc.declaration.municipality_settings(MUNICIPALITY)
            except Exception:
                return None
        assert eventually(known, timeout=60)
        issued = []
        for number in range(DECLARATIONS):
            filed = rpc.declaration.request_declaration(request(number), STAFF)
            decided = rpc.declaration.decide_declaration(filed["id"], "ISSUE", None, STAFF)
            assert decided["status"] == "ISSUED"
            issued.append((filed["reference"], filed["verification_code"]))
        for held, code in issued * CHECKS_EACH:
            answer = rpc.declaration.check_declaration(held, code, "PARKING_PERMIT",
                                                       "partner:replica-test")
            assert answer["valid"], answer
    for entrypoint in ("request_declaration", "decide_declaration", "check_declaration"):
        counts = [served(replicated, name, entrypoint)
                  for name in ("declaration", "declaration-2")]
        assert all(counts), (entrypoint, counts)


def test_the_store_stops_after_the_services_cleanly_and_nothing_outlives_them(replicated):
    """Runs last in this module: it stops the platform."""
    pids = {name: child.pid for name, child in replicated.children.items()}
    store = replicated.children["store"]
    replicated.stop()
    assert store.returncode == 0, "the store did not stop on SIGTERM with its files closed"
    assert not [name for name, pid in pids.items() if alive(pid)]
