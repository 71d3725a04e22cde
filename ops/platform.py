"""Starting, watching and stopping the platform's processes: one per service, one for the
gateway (every HTTP-serving nameko service needs a port of its own).

No process outlives the launcher: on Linux each one is started with the parent-death signal
set (``prctl(PR_SET_PDEATHSIG)``), so the kernel kills it when the launcher dies, even by
SIGKILL. A process that dies while the platform runs is started again after a delay that
doubles with every death in a row, as compose and Kubernetes restart a container."""
import ctypes
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests
from prometheus_client.parser import text_string_to_metric_families

from common import config as settings
from common.calls import SignedClusterRpcProxy
from common.config import SERVICE_NAMES

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
    (by name), such as its own broker user. ``say`` reports starts, deaths and restarts."""

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

    def log_file(self, name):
        return self.logs / f"{name}.log"

    def start(self):
        for process in PROCESSES:
            self.start_process(process)

    def start_process(self, process):
        """Starts one process, also again after it stopped."""
        output = None
        if self.logs:
            self.logs.mkdir(parents=True, exist_ok=True)
            output = open(self.log_file(process.name), "ab")
        try:
            self.children[process.name] = subprocess.Popen(
                [sys.executable, "-m", "nameko", "run", "--config", process.config,
                 process.target],
                cwd=ROOT, env={**self.environ, **self.process_environ.get(process.name, {})},
                stdout=output,
                stderr=subprocess.STDOUT if output else None,
                # Ctrl-C reaches the launcher only, which stops them in order.
                start_new_session=True, preexec_fn=die_with(os.getpid()))
        finally:
            if output:
                output.close()
        self.started_at[process.name] = time.monotonic()
        self.restart_due.pop(process.name, None)
        self.say(f"{process.name} started (pid {self.children[process.name].pid})")
        return self.children[process.name]

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
        address = metrics_address(process_named(service), self.environ)
        text = requests.get(f"http://{address}/metrics", timeout=10).text
        return sum(sample.value for family in text_string_to_metric_families(text)
                   for sample in family.samples
                   if sample.name == "mantelzorg_events_handled_total"
                   and sample.labels.get("type") == event_type
                   and sample.labels.get("outcome") == "handled")

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
        processes ``names`` lists)."""
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
        while "gateway" in wanted and time.monotonic() < deadline:
            self.raise_if_exited()
            try:
                if requests.get(f"{self.gateway_url()}/health", timeout=2).ok:
                    return
            except requests.RequestException:
                time.sleep(0.3)
        if pending or "gateway" in wanted:
            raise TimeoutError(f"not healthy after {timeout} s: {sorted(pending) or ['gateway']}")

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
                self.start_process(process_named(name))

    def raise_if_exited(self):
        for name, child in self.children.items():
            if child.poll() is not None:
                raise RuntimeError(f"{name} {exit_description(child.returncode)}")

    def stop(self, grace=15):
        self._terminate(list(self.children.values()), grace)
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
