# eventlet must patch the standard library before anything else is imported, or nameko
# containers started by the tests hang. Threads stay threads: the suite's second process
# (pytest-xdist) takes its orders on a thread of its own, which a green wait would not hear.
import eventlet

eventlet.monkey_patch(thread=False)

import os  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import requests  # noqa: E402

from common.config import DEFAULT_AMQP_URI  # noqa: E402
from common.topology import declare_topology  # noqa: E402
from ops.broker import create_vhost, delete_vhost  # noqa: E402
from common.config import SERVICE_NAMES  # noqa: E402
from ops.platform import PROCESSES, Platform  # noqa: E402
from services.declaration.storage import DeclarationStore  # noqa: E402

from tests import run_record  # noqa: E402
from tests.support import (ANSWERS, EVENT_CAPTURE_QUEUE, JWT_SECRET, STARTED,  # noqa: E402
                           GraphQLClient, fund_knows_areas)

ROOT = Path(__file__).resolve().parents[1]
REFERENCE_DATA = ROOT / "ops" / "reference_data"


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def reference_data():
    if not (REFERENCE_DATA / "municipalities.csv").exists():
        pytest.fail(f"reference data missing: {REFERENCE_DATA}")
    return REFERENCE_DATA


@contextmanager
def throwaway_vhost(kind="test"):
    """A RabbitMQ virtual host of its own on the shared broker; yields its AMQP URI."""
    base = os.environ.get("AMQP_URI", DEFAULT_AMQP_URI)
    name = f"mantelzorg-{kind}-{uuid.uuid4().hex[:8]}"
    try:
        yield create_vhost(base, name)
    finally:
        delete_vhost(base, name)


@contextmanager
def lone_gateway(folder, **settings):
    """A gateway process of its own with no service behind it, in an empty virtual host,
    its data and log in ``folder``; ``settings`` are added to its environment. Yields
    ``{"site", "log", "process"}`` once it answers /health."""
    port = free_port()
    with throwaway_vhost("gateway") as uri:
        environ = dict(os.environ, AMQP_URI=uri, GATEWAY_PORT=str(port),
                       MANTELZORG_DATA_DIR=str(folder / "data"), GATEWAY_RPC_TIMEOUT_SECONDS="1",
                       MANTELZORG_JWT_SECRET=JWT_SECRET, PYTHONWARNINGS="ignore",
                       **{key: value.replace("{site}", f"http://127.0.0.1:{port}")
                          for key, value in settings.items()})
        site = f"http://127.0.0.1:{port}"
        log_path = folder / "gateway.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "nameko", "run", "--config", "gateway/config.yml",
                 "gateway.service:GatewayService"], cwd=ROOT, env=environ, stdout=log,
                stderr=subprocess.STDOUT)
            STARTED.add(log_path, folder / "data")
            try:
                deadline = time.monotonic() + 60
                while True:
                    try:
                        if requests.get(f"{site}/health", timeout=1).status_code == 200:
                            break
                    except requests.ConnectionError:
                        pass
                    assert time.monotonic() < deadline and process.poll() is None, \
                        "gateway did not start"
                    time.sleep(0.2)
                yield {"site": site, "log": log_path, "process": process}
            finally:
                process.terminate()
                process.wait(timeout=20)


@pytest.fixture(scope="session")
def amqp_uri():
    """A throwaway RabbitMQ virtual host for this test run."""
    with throwaway_vhost() as uri:
        yield uri


@pytest.fixture
def empty_amqp_uri():
    """A virtual host of this test's own, in which nothing is declared yet."""
    with throwaway_vhost("empty") as uri:
        yield uri


def platform_environ(amqp_uri, data_dir, **extra):
    """The environment of a test platform: its broker, its own data folder and free ports."""
    environ = dict(os.environ, AMQP_URI=amqp_uri, MANTELZORG_JWT_SECRET=JWT_SECRET,
                   MANTELZORG_DATA_DIR=str(data_dir), GATEWAY_PORT=str(free_port()), **extra)
    for process in PROCESSES:
        environ[process.address_variable] = f"127.0.0.1:{free_port()}"
    return environ


@contextmanager
def running_platform(amqp_uri, tmp_path_factory, process_environ=None, **extra):
    """Every service and the gateway as real processes on the real broker (the queues
    declared already), with the embedded document store in a fresh folder and free ports;
    failing events are retried quickly, and declarations due for their expiry notice are
    looked for every second."""
    data, logs = tmp_path_factory.mktemp("data"), tmp_path_factory.mktemp("logs")
    environ = platform_environ(amqp_uri, data, **{"EVENT_RETRY_DELAY_MS": "200",
                                                  "EVENT_RETRY_MAX_DELAY_MS": "2000",
                                                  "NOTIFICATIONS_EXPIRY_CHECK_SECONDS": "1",
                                                  **extra})
    running = Platform(environ, logs=logs, process_environ=process_environ,
                       say=lambda line: None)
    STARTED.add(logs, data)
    running.start()
    try:
        running.wait_until_healthy()
        yield running
    finally:
        running.stop()


def _capture_every_event(amqp_uri):
    """A queue bound to every service's event exchange: the scan after the run reads what
    was published."""
    from kombu import Connection, Queue
    from nameko.standalone.events import get_event_exchange

    with Connection(amqp_uri) as connection:
        channel = connection.channel()
        for service in SERVICE_NAMES:
            exchange = get_event_exchange(service, {})
            exchange(channel).declare()
            Queue(EVENT_CAPTURE_QUEUE, exchange, routing_key="#")(channel).declare()


@pytest.fixture(scope="session", autouse=True)
def recorded_answers():
    """Every error answer of the run, for the scan after it."""
    ANSWERS.start()
    yield ANSWERS
    ANSWERS.stop()


# The modules whose tests this process ran, for the scan's record.
MODULES_RUN = set()


def pytest_configure(config):
    run_record.start_afresh(config)


def pytest_runtest_setup(item):
    MODULES_RUN.add(item.module.__name__.rsplit(".", 1)[-1])


def pytest_sessionfinish(session):
    run_record.keep_process(session.config, MODULES_RUN)


@pytest.fixture(scope="session")
def platform(amqp_uri, tmp_path_factory, request):
    declare_topology({"AMQP_URI": amqp_uri})
    _capture_every_event(amqp_uri)
    with running_platform(amqp_uri, tmp_path_factory) as running:
        yield running
        run_record.keep_platform(request.config, running, amqp_uri)


@pytest.fixture(scope="session")
def rpc(platform):
    with platform.rpc(timeout=30) as proxy:
        yield proxy


@pytest.fixture(scope="session")
def gql(platform):
    return GraphQLClient(f"{platform.gateway_url()}/graphql")


@pytest.fixture(scope="session")
def municipalities(rpc, reference_data):
    """All 342 municipalities imported into the registry, as the import command does."""
    from ops.reference import import_municipalities

    report = import_municipalities(rpc, reference_data / "municipalities.csv")
    assert not report["rejected"]
    return report


@pytest.fixture(scope="session")
def pc4_areas(rpc, municipalities, reference_data):
    """The PC4 areas imported into the registry, and the travel-cost fund's copy of their
    centroids complete (it learns them from the registry's events)."""
    from ops.reference import import_pc4_areas

    report = import_pc4_areas(rpc, reference_data / "pc4.csv")
    assert fund_knows_areas(rpc, reference_data / "pc4.csv")
    return report["imported"] + report["unchanged"]


@pytest.fixture
def declaration_store():
    """The declaration service's store on an embedded server of its own, in memory."""
    store = DeclarationStore("declaration_probe", "", ":memory:")
    yield store
    store.close()


@pytest.fixture
def outbox_store():
    """An embedded store in memory with the outbox's indexes, for an Outbox of a test's own."""
    from common.storage import DocumentStore, OutboxStore

    opened = DocumentStore("outbox_probe", "", ":memory:")
    OutboxStore(opened).ensure_indexes()
    yield opened
    opened.close()
