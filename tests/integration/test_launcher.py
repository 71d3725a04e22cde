"""The launcher (``mantelzorg run``) as a supervisor, a container runtime or ``kill`` stops
it: nothing it started outlives it, and a service that dies is started again."""
import os
import re
import signal
import socket
import subprocess
import sys

import pytest
from nameko.standalone.rpc import ClusterRpcProxy

from ops import platform as platform_module
from ops.platform import PROCESSES, ROOT
from tests.conftest import platform_environ
from tests.support import eventually

STARTED = re.compile(r"^(\w+) started \(pid (\d+)\)$", re.MULTILINE)


def alive(pid):
    """Running, and not a zombie waiting to be reaped."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def port_free(address):
    host, port = address.rsplit(":", 1)
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, int(port)))
        except OSError:
            return False
    return True


class Launcher:
    """``python -m ops.cli run`` (with ``options``) in the given virtual host and a data folder
    of its own."""

    def __init__(self, folder, amqp_uri, *options):
        self.environ = platform_environ(amqp_uri, folder / "data", PYTHONUNBUFFERED="1")
        self.addresses = [f"127.0.0.1:{self.environ['GATEWAY_PORT']}"] + [
            self.environ[process.address_variable] for process in PROCESSES]
        self.log = folder / "launcher.log"
        with open(self.log, "wb") as output:
            self.process = subprocess.Popen([sys.executable, "-m", "ops.cli", "run", *options],
                                            cwd=ROOT,
                                            env=self.environ, stdout=output,
                                            stderr=subprocess.STDOUT)

    def output(self):
        return self.log.read_text(errors="replace")

    def wait_for(self, pattern, timeout=120):
        found = eventually(lambda: re.search(pattern, self.output(), re.MULTILINE),
                           timeout=timeout, interval=0.3)
        assert found, f"the launcher never wrote {pattern!r}:\n{self.output()[-3000:]}"
        return found

    def pids(self):
        """Every process the launcher started so far, restarted ones included."""
        return {int(pid): name for name, pid in STARTED.findall(self.output())}

    def close(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        for pid in self.pids():
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def _healthy(service):
    try:
        return service.health()["status"] == "ok"
    except Exception:
        return False


@pytest.fixture
def run(tmp_path, empty_amqp_uri):
    launched = Launcher(tmp_path, empty_amqp_uri)
    yield launched
    launched.close()


@pytest.fixture
def sample_run(tmp_path, empty_amqp_uri):
    """The launcher seeding the ten-municipality sample: it runs in seconds instead of after
    the national data's import (which ``run`` above goes through)."""
    launched = Launcher(tmp_path, empty_amqp_uri, "--sample")
    yield launched
    launched.close()


def test_sigterm_stops_every_process_and_frees_every_port_after_a_killed_service_restarted(
        sample_run):
    run = sample_run   # the national data's seeding is test_registry_import's
    run.wait_for(r"^The platform runs\.")
    first = {name: pid for pid, name in run.pids().items()}
    assert sorted(first) == sorted(p.name for p in PROCESSES)

    os.kill(first["registry"], signal.SIGKILL)
    run.wait_for(rf"^registry \(pid {first['registry']}\) killed by SIGKILL; restarting in 1 s")
    again = eventually(lambda: [pid for pid, name in run.pids().items()
                                if name == "registry" and pid != first["registry"]], timeout=30)
    assert again, run.output()[-2000:]
    with ClusterRpcProxy({"AMQP_URI": run.environ["AMQP_URI"]}, timeout=5) as rpc:
        assert eventually(lambda: _healthy(rpc.registry), timeout=60)

    run.process.send_signal(signal.SIGTERM)
    assert run.process.wait(timeout=60) == 0
    assert "SIGTERM: stopping" in run.output()
    assert not [pid for pid in run.pids() if alive(pid)]
    assert all(port_free(address) for address in run.addresses)


def test_sighup_while_starting_stops_everything(run):
    eventually(lambda: len(run.pids()) == len(PROCESSES), timeout=60)
    run.process.send_signal(signal.SIGHUP)
    assert run.process.wait(timeout=60) == 0
    assert "SIGHUP: stopping" in run.output()
    assert not [pid for pid in run.pids() if alive(pid)]


def test_no_service_outlives_a_launcher_killed_with_sigkill(sample_run):
    run = sample_run
    run.wait_for(r"^The platform runs\.")
    pids = run.pids()
    assert len(pids) == len(PROCESSES)
    run.process.kill()
    run.process.wait()
    assert eventually(lambda: not [pid for pid in pids if alive(pid)], timeout=10), \
        [name for pid, name in pids.items() if alive(pid)]


class Dead:
    """A child process that has died."""
    pid = 4242

    @staticmethod
    def poll():
        return -signal.SIGKILL


def test_a_process_that_keeps_dying_is_restarted_after_a_delay_that_doubles(monkeypatch):
    """1 s, 2 s, 4 s ... up to 30 s between restarts while a process dies again soon after
    each start; 1 s again after it ran for a minute."""
    said, clock = [], [1000.0]
    monkeypatch.setattr(platform_module.time, "monotonic", lambda: clock[0])
    launched = platform_module.Platform(environ={}, say=said.append)

    def start_process(process):      # a process that dies at once
        launched.children[process.name] = Dead()
        launched.started_at[process.name] = clock[0]
        launched.restart_due.pop(process.name, None)

    monkeypatch.setattr(launched, "start_process", start_process)
    start_process(platform_module.process_named("registry"))

    delays = []
    for _ in range(7):
        launched.supervise()                         # the death is seen
        due = launched.restart_due["registry"]
        delays.append(due - clock[0])
        clock[0] = due - 0.01
        launched.supervise()                         # not yet
        assert "registry" in launched.restart_due
        clock[0] = due
        launched.supervise()                         # restarted now
        assert "registry" not in launched.restart_due
    assert delays == [1, 2, 4, 8, 16, 30, 30]
    assert said[0] == "registry (pid 4242) killed by SIGKILL; restarting in 1 s (restart 1 in a row)"

    clock[0] += platform_module.STABLE_AFTER_SECONDS    # it ran long enough this time
    launched.supervise()
    assert launched.restart_due["registry"] - clock[0] == 1
