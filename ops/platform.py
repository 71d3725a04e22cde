"""Starting, watching and stopping the platform's processes: one per service, one for the
gateway (every HTTP-serving nameko service needs a port of its own).

No process outlives the launcher: on Linux each one is started with the parent-death signal
set (``prctl(PR_SET_PDEATHSIG)``), so the kernel kills it when the launcher dies, even by
SIGKILL. A process that dies while the platform runs is started again after a delay that
doubles with every death in a row, as compose and Kubernetes restart a container.

``MANTELZORG_STORE=process`` starts the development store as a process of its own first
(ops/store.py), as mongod runs in production, and gives every process its MONGO_URI and the
development keys; ``MANTELZORG_REPLICAS`` (e.g. ``declaration=2``) then runs several
processes of a service, each with a metrics address of its own."""
import ctypes
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests
from prometheus_client.parser import text_string_to_metric_families

from common import config as settings
from common import crypto
from common.calls import SignedClusterRpcProxy
from common.config import SERVICE_NAMES
from ops import store

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Process:
    name: str
    target: str          # module:Class for ``nameko run``
    config: str          # its nameko config, relative to the repository root
    address_variable: str   # the address of its /metrics (the gateway's public port is apart)
    default_port: int


GATEWAY_METRICS_PORT = 8005


def _service_process(number, name):
    """services/<name>/service.py holds <Name>Service; its metrics port is 8001, 8002, ...,
    passing over the gateway's (the fifth service, notifications, has 8006)."""
    class_name = "".join(part.capitalize() for part in name.split("_")) + "Service"
    port = 8001 + number
    port += port >= GATEWAY_METRICS_PORT
    return Process(name, f"services.{name}.service:{class_name}", f"services/{name}/config.yml",
                   f"{name.upper()}_WEB_ADDRESS", port)


GATEWAY = Process("gateway", "gateway.service:GatewayService", "gateway/config.yml",
                  "GATEWAY_METRICS_ADDRESS", GATEWAY_METRICS_PORT)
PROCESSES = (*(_service_process(number, name) for number, name in enumerate(SERVICE_NAMES)),
             GATEWAY)


# Restarts of a process that keeps dying: 1 s, 2 s, 4 s ... at most 30 s; a process that
# ran this long since its last start counts as healthy again and starts over at 1 s.
FIRST_RESTART_DELAY = 1.0
MAX_RESTART_DELAY = 30.0
STABLE_AFTER_SECONDS = 60.0
PR_SET_PDEATHSIG = 1


def process_named(name):
    return next(process for process in PROCESSES if process.name == name)


# The development store's process, when it runs as one (MANTELZORG_STORE=process).
STORE = "store"
EMBEDDED, AS_PROCESS = "embedded", "process"
STORE_START_SECONDS = 60


def store_as_process(environ):
    """MANTELZORG_STORE: ``embedded`` (the default: each process starts its own store) or
    ``process`` (the launcher starts one for all)."""
    value = settings.setting(None, "MANTELZORG_STORE", EMBEDDED, environ=environ).lower()
    if value not in (EMBEDDED, AS_PROCESS):
        raise settings.SettingsError(
            f"MANTELZORG_STORE must be {EMBEDDED} or {AS_PROCESS}, not {value!r}")
    return value == AS_PROCESS


def replica_counts(environ):
    """MANTELZORG_REPLICAS: how many processes of a service to run, e.g.
    ``declaration=2,travel_costs=2``; one of every other."""
    counts = {}
    for item in settings.setting(None, "MANTELZORG_REPLICAS", "", environ=environ).split(","):
        if not item.strip():
            continue
        name, _, count = (part.strip() for part in item.partition("="))
        if name not in SERVICE_NAMES:
            raise settings.SettingsError(
                f"MANTELZORG_REPLICAS: {name!r} is not one of {', '.join(SERVICE_NAMES)} "
                "(the gateway has one public port)")
        if not count.isdigit() or int(count) < 1:
            raise settings.SettingsError(
                f"MANTELZORG_REPLICAS: {name}={count!r}, the count must be a whole number from 1")
        counts[name] = int(count)
    return counts


def free_local_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def data_folder(environ):
    """MANTELZORG_DATA_DIR as the processes see it: relative to the repository, their
    working directory."""
    value = settings.setting(None, "MANTELZORG_DATA_DIR", ".data", environ=environ)
    return value if value == ":memory:" else str(ROOT / value)


def die_with(parent_pid):
    """A ``preexec_fn`` for Popen: the child gets SIGKILL when its parent dies. The
    launcher's own death is a crash, and every service already survives being killed
    (outbox, transactions, redelivery); a graceful stop could hang with nobody left to
    finish it."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl   # looked up before the fork

    def set_parent_death_signal():
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent_pid:   # the parent died before the signal was set
            os._exit(1)
    return set_parent_death_signal


def exit_description(code):
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


def metrics_address(process, environ):
    return settings.setting(None, process.address_variable, f"127.0.0.1:{process.default_port}",
                            environ=environ)


class Platform:
    """The running processes; ``logs`` names a folder to write each one's output to,
    otherwise they share this terminal. ``process_environ`` adds settings for one process
    (by name; for every replica of it), such as its own broker user. ``say`` reports
    starts, deaths and restarts.

    A replica after the first of a service is named ``<service>-<n>`` and has a free local
    port for its metrics, kept across its restarts."""

    def __init__(self, environ=None, logs=None, process_environ=None, say=None):
        self.environ = dict(os.environ if environ is None else environ)
        self.environ.setdefault("PYTHONWARNINGS", "ignore")
        self.logs = Path(logs) if logs else None
        self.process_environ = process_environ or {}
        self.say = say or (lambda line: print(line, flush=True))
        self.children = {}
        self.started_at = {}
        self.deaths_in_a_row = {}
        self.restart_due = {}
        self.store_port = None
        self.store_environ = {}
        if store_as_process(self.environ):
            if settings.setting(None, "MONGO_URI", environ=self.environ):
                raise settings.SettingsError(
                    f"MANTELZORG_STORE={AS_PROCESS} starts the store itself: unset MONGO_URI")
            self.store_port = free_local_port()
        counts = replica_counts(self.environ)
        several = sorted(name for name, count in counts.items() if count > 1)
        if several and self.store_port is None:
            raise settings.SettingsError(
                f"MANTELZORG_REPLICAS ({', '.join(several)}) needs MANTELZORG_STORE={AS_PROCESS}: "
                "each process's embedded store would keep data of its own, and the replicas "
                "would diverge")
        self.processes, self.service_of, self.addresses = [], {}, {}
        for process in PROCESSES:
            for number in range(1, counts.get(process.name, 1) + 1):
                replica = process if number == 1 else dataclasses.replace(
                    process, name=f"{process.name}-{number}", default_port=free_local_port())
                self.processes.append(replica)
                self.service_of[replica.name] = process.name
                self.addresses[replica.name] = (
                    metrics_address(process, self.environ) if number == 1
                    else f"{metrics_address(process, self.environ).rsplit(':', 1)[0]}:"
                         f"{replica.default_port}")

    def log_file(self, name):
        return self.logs / f"{name}.log"

    def instance(self, name):
        """The process (or replica) of this name."""
        return next(process for process in self.processes if process.name == name)

    def replicas(self, service):
        return [process for process in self.processes if self.service_of[process.name] == service]

    def start(self):
        if self.store_port is not None:
            self.start_store()
        for process in self.processes:
            self.start_process(process)

    def start_store(self):
        """The development store as a process of its own, before any service: its port is
        chosen once, so that a restarted store is where the services look for it. The keys
        are made into the data folder here, as every process would otherwise make its own."""
        folder = data_folder(self.environ)
        if not self.store_environ:
            self.store_environ = {"MONGO_URI": store.uri(self.store_port),
                                  **crypto.development_keys(folder)}
        storage = folder if folder == ":memory:" else os.path.join(folder, STORE)
        child = self._spawn(STORE, [sys.executable, "-m", "ops.store", "--port",
                                    str(self.store_port), "--storage-path", storage],
                            self.environ)
        deadline = time.monotonic() + STORE_START_SECONDS
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.store_port), timeout=1).close()
                return child
            except OSError:
                if child.poll() is not None:
                    raise RuntimeError(f"{STORE} {exit_description(child.returncode)}") from None
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{STORE} not listening after {STORE_START_SECONDS} s")
                time.sleep(0.1)

    def process_settings(self, process):
        """What one process (or replica) is started with beyond the platform's settings: with
        the store as a process, its address and the development keys this process uses."""
        service = self.service_of.get(process.name, process.name)
        added = {}
        if self.store_environ:
            kinds = set(crypto.PROCESS_KEYS[service])
            if service == "gateway":
                kinds.add(crypto.call_key_setting("gateway"))
            added = {name: value for name, value in self.store_environ.items()
                     if name == "MONGO_URI" or name in kinds
                     or name.endswith("_CALL_PUBLIC_KEY")}
        if process.name != service:
            added[process.address_variable] = self.addresses[process.name]
        return {**added, **self.process_environ.get(service, {})}

    def start_process(self, process):
        """Starts one process, also again after it stopped."""
        return self._spawn(process.name,
                           [sys.executable, "-m", "nameko", "run", "--config", process.config,
                            process.target],
                           {**self.environ, **self.process_settings(process)})

    def _spawn(self, name, command, environ):
        output = None
        if self.logs:
            self.logs.mkdir(parents=True, exist_ok=True)
            output = open(self.log_file(name), "ab")
        try:
            self.children[name] = subprocess.Popen(
                command, cwd=ROOT, env=environ, stdout=output,
                stderr=subprocess.STDOUT if output else None,
                # Ctrl-C reaches the launcher only, which stops them in order.
                start_new_session=True, preexec_fn=die_with(os.getpid()))
        finally:
            if output:
                output.close()
        self.started_at[name] = time.monotonic()
        self.restart_due.pop(name, None)
        self.say(f"{name} started (pid {self.children[name].pid})")
        return self.children[name]

    def stop_process(self, process, grace=15):
        """Stops one process (SIGTERM, then SIGKILL after ``grace`` seconds); it is not
        restarted until ``start_process``."""
        child = self.children.pop(process.name, None)
        self.restart_due.pop(process.name, None)
        if child is not None:
            self._terminate([child], grace)

    def gateway_url(self):
        port = settings.setting(None, "GATEWAY_PORT", 8000, environ=self.environ)
        return f"http://127.0.0.1:{port}"

    def events_handled(self, service, event_type):
        """How many ``event_type`` events ``service`` has handled since its process started,
        as its /metrics tell Prometheus: how far a consumer has come."""
        return sum(sample.value for replica in self.replicas(service)
                   for sample in self.metric_samples(replica.name)
                   if sample.name == "mantelzorg_events_handled_total"
                   and sample.labels.get("type") == event_type
                   and sample.labels.get("outcome") == "handled")

    def metric_samples(self, name):
        """Every sample on the /metrics of one process (or replica)."""
        text = requests.get(f"http://{self.addresses[name]}/metrics", timeout=10).text
        return [sample for family in text_string_to_metric_families(text)
                for sample in family.samples]

    def rpc(self, timeout=10, context_data=None):
        """The operator's RPC client of this platform: every call signed with the operator's
        key (MANTELZORG_OPERATOR_CALL_KEY; in development the key of the data folder)."""
        amqp = settings.setting(None, "AMQP_URI", settings.DEFAULT_AMQP_URI, environ=self.environ)
        config = {"AMQP_URI": amqp, "AMQP_SSL": settings.amqp_ssl(environ=self.environ),
                  "DATA_DIR": settings.setting(None, "MANTELZORG_DATA_DIR", ".data",
                                               environ=self.environ)}
        return SignedClusterRpcProxy(config, timeout=timeout, context_data=context_data,
                                     environ=self.environ)

    def wait_until_healthy(self, timeout=90, names=None):
        """Every service answers its health RPC and the gateway its /health (or only the
        processes ``names`` lists); a service's replicas after the first, their /metrics."""
        deadline = time.monotonic() + timeout
        wanted = set(names or (*SERVICE_NAMES, "gateway"))
        pending = wanted - {"gateway"}
        with self.rpc(timeout=3) as rpc:
            while pending and time.monotonic() < deadline:
                self.raise_if_exited()
                for name in sorted(pending):
                    try:
                        if getattr(rpc, name).health()["status"] == "ok":
                            pending.discard(name)
                    except Exception:
                        time.sleep(0.3)
        if pending:
            raise TimeoutError(f"not healthy after {timeout} s: {sorted(pending)}")
        for process in self.processes:
            if self.service_of[process.name] in wanted and process.name not in wanted:
                self._answers(f"http://{self.addresses[process.name]}/metrics", process.name,
                              deadline, timeout)
        if "gateway" in wanted:
            self._answers(f"{self.gateway_url()}/health", "gateway", deadline, timeout)

    def _answers(self, url, name, deadline, timeout):
        while time.monotonic() < deadline:
            self.raise_if_exited()
            try:
                if requests.get(url, timeout=2).ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.3)
        raise TimeoutError(f"not healthy after {timeout} s: {[name]}")

    def wait_while_running(self, interval=0.5):
        """Watches the processes until interrupted, restarting any that dies."""
        while True:
            self.supervise()
            time.sleep(interval)

    def supervise(self):
        """One look at every process: a death is reported and its restart scheduled; a
        restart that is due is made."""
        now = time.monotonic()
        for name, child in list(self.children.items()):
            code = child.poll()
            if code is None:
                continue
            if name not in self.restart_due:
                ran = now - self.started_at.get(name, now)
                streak = 0 if ran >= STABLE_AFTER_SECONDS else self.deaths_in_a_row.get(name, 0)
                self.deaths_in_a_row[name] = streak + 1
                delay = min(FIRST_RESTART_DELAY * 2 ** streak, MAX_RESTART_DELAY)
                self.restart_due[name] = now + delay
                self.say(f"{name} (pid {child.pid}) {exit_description(code)}; "
                         f"restarting in {delay:g} s (restart {streak + 1} in a row)")
            elif now >= self.restart_due[name]:
                if name == STORE:
                    self.start_store()
                else:
                    self.start_process(self.instance(name))

    def raise_if_exited(self):
        for name, child in self.children.items():
            if child.poll() is not None:
                raise RuntimeError(f"{name} {exit_description(child.returncode)}")

    def stop(self, grace=15):
        """Every process, the store last: the services may still write while they stop."""
        store_process = self.children.pop(STORE, None)
        self._terminate(list(self.children.values()), grace)
        if store_process is not None:
            self._terminate([store_process], grace)
        self.children.clear()
        self.restart_due.clear()

    @staticmethod
    def _terminate(children, grace):
        """SIGTERM to each process's group (it leads a session of its own), SIGKILL to the
        group of any still running after ``grace`` seconds."""
        def signal_group(child, signum):
            if child.poll() is not None:   # reaped: its pid may belong to another by now
                return
            try:
                os.killpg(child.pid, signum)
            except ProcessLookupError:
                pass
        for child in children:
            signal_group(child, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for child in children:
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                signal_group(child, signal.SIGKILL)
                child.wait()
