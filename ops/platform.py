"""Starting and stopping the platform's processes: one per service, one for the gateway
(every HTTP-serving nameko service needs a port of its own)."""
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests
from nameko.standalone.rpc import ClusterRpcProxy

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Process:
    name: str
    target: str          # module:Class for ``nameko run``
    config: str          # its nameko config, relative to the repository root
    address_variable: str
    default_port: int


PROCESSES = (
    Process("registry", "services.registry.service:RegistryService",
            "services/registry/config.yml", "REGISTRY_WEB_ADDRESS", 8001),
    Process("declaration", "services.declaration.service:DeclarationService",
            "services/declaration/config.yml", "DECLARATION_WEB_ADDRESS", 8002),
    Process("travel_costs", "services.travel_costs.service:TravelCostsService",
            "services/travel_costs/config.yml", "TRAVEL_COSTS_WEB_ADDRESS", 8003),
    Process("campaign", "services.campaign.service:CampaignService",
            "services/campaign/config.yml", "CAMPAIGN_WEB_ADDRESS", 8004),
    Process("gateway", "gateway.service:GatewayService", "gateway/config.yml",
            "GATEWAY_PORT", 8000),
)
SERVICE_NAMES = tuple(p.name for p in PROCESSES if p.name != "gateway")


def metrics_address(process, environ):
    if process.name == "gateway":
        return f"127.0.0.1:{environ.get('GATEWAY_PORT', process.default_port)}"
    return environ.get(process.address_variable, f"127.0.0.1:{process.default_port}")


class Platform:
    """The running processes; ``logs`` names a folder to write each one's output to,
    otherwise they share this terminal. ``process_environ`` adds settings for one process
    (by name), such as its own broker user."""

    def __init__(self, environ=None, logs=None, process_environ=None):
        self.environ = dict(os.environ if environ is None else environ)
        self.environ.setdefault("PYTHONWARNINGS", "ignore")
        self.logs = Path(logs) if logs else None
        self.process_environ = process_environ or {}
        self.children = {}

    def log_file(self, name):
        return self.logs / f"{name}.log"

    def start(self):
        for process in PROCESSES:
            output = None
            if self.logs:
                self.logs.mkdir(parents=True, exist_ok=True)
                output = open(self.log_file(process.name), "ab")
            self.children[process.name] = subprocess.Popen(
                [sys.executable, "-m", "nameko", "run", "--config", process.config,
                 process.target],
                cwd=ROOT, env={**self.environ, **self.process_environ.get(process.name, {})},
                stdout=output, stderr=subprocess.STDOUT if output else None,
                start_new_session=True)   # Ctrl-C reaches the launcher, which stops them in order

    def gateway_url(self):
        return f"http://127.0.0.1:{self.environ.get('GATEWAY_PORT', 8000)}"

    def rpc(self, timeout=10):
        return ClusterRpcProxy({"AMQP_URI": self.environ["AMQP_URI"]}, timeout=timeout)

    def wait_until_healthy(self, timeout=90):
        deadline = time.monotonic() + timeout
        pending = set(SERVICE_NAMES)
        with self.rpc(timeout=3) as rpc:
            while pending and time.monotonic() < deadline:
                self.raise_if_exited()
                for name in sorted(pending):
                    try:
                        if getattr(rpc, name).health()["status"] == "ok":
                            pending.discard(name)
                    except Exception:
                        time.sleep(0.3)
        while time.monotonic() < deadline:
            self.raise_if_exited()
            try:
                if requests.get(f"{self.gateway_url()}/health", timeout=2).ok:
                    return
            except requests.RequestException:
                time.sleep(0.3)
        raise TimeoutError(f"not healthy after {timeout} s: {sorted(pending) or ['gateway']}")

    def wait_while_running(self):
        while True:
            self.raise_if_exited()
            time.sleep(0.5)

    def raise_if_exited(self):
        for name, child in self.children.items():
            if child.poll() is not None:
                raise RuntimeError(f"{name} exited with code {child.returncode}")

    def stop(self, grace=15):
        for child in self.children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for child in self.children.values():
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        self.children.clear()
