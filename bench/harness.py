"""What every benchmark needs: the platform in a throwaway vhost and data folder, a load
of N concurrent clients, and a table of median / p99 / requests per second with the CPU
time each process spent per request.

Sizes come from settings, so that a run can be small: ``BENCH_REFERENCE_DIR`` (the reference
data, default the national CBS data; ``ops/demo`` holds ten municipalities), and for every
measured run ``BENCH_MAX_REQUESTS``, ``BENCH_MAX_CONCURRENCY``, ``BENCH_CONNECT_SECONDS``
(the clients' time to connect before a paced run, 1), ``BENCH_CAPACITY_SECONDS`` (per step
of a capacity search) and ``BENCH_CAPACITY_MAX_RATE`` and ``BENCH_STOP_GRACE_SECONDS`` (how long the platform may
take to stop, 15); each benchmark names its own sizes in
its docstring. The smoke test (tests/integration/test_benchmarks.py) runs every
benchmark so, in seconds. A request that fails, or a check a benchmark makes of its results
(``problem``), makes ``python -m bench`` exit 1: its figures would not mean anything."""
import contextlib
import http.client
import json
import os
import resource
import socket
import statistics
import tempfile
import threading
import time
import uuid

from pathlib import Path

from common import config as settings
from common.calls import SignedClusterRpcProxy
from common.config import DEFAULT_AMQP_URI
from common.topology import declare_topology
from gateway.auth import issue_development_token
from ops.broker import create_vhost, delete_vhost, ensure_broker, ensure_management
from ops.platform import PROCESSES, Platform

NATIONAL_DATA = Path(__file__).resolve().parents[1] / "ops" / "reference_data"
# What went wrong in this run: failed requests (first error of each measured run) and the
# checks of the benchmarks' own results.
PROBLEMS = []


def size(name, default):
    """A benchmark's size: the setting ``BENCH_<name>``, else ``default``."""
    return settings.int_setting(None, f"BENCH_{name}", default)


def reference_folder():
    """The reference data a benchmark loads: BENCH_REFERENCE_DIR, else the national data."""
    return Path(settings.setting(None, "BENCH_REFERENCE_DIR", str(NATIONAL_DATA)))


def problem(text):
    """A benchmark's result is wrong: reported, and the run exits 1."""
    print(f"  PROBLEM: {text}")
    PROBLEMS.append(text)


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def running_platform(**extra_environ):
    """All services and the gateway, as ``make run`` starts them, in a fresh vhost."""
    base = os.environ.get("AMQP_URI", DEFAULT_AMQP_URI)
    ensure_broker(base)
    ensure_management(base)
    vhost = f"mantelzorg-bench-{uuid.uuid4().hex[:8]}"
    amqp = create_vhost(base, vhost)
    with tempfile.TemporaryDirectory() as folder:
        environ = dict(os.environ, AMQP_URI=amqp, MANTELZORG_DATA_DIR=os.path.join(folder, "data"),
                       MANTELZORG_JWT_SECRET=extra_environ.pop("MANTELZORG_JWT_SECRET",
                                                               "bench-secret-of-thirty-two-bytes"),
                       GATEWAY_PORT=str(_free_port()), **extra_environ)
        for process in PROCESSES:
            environ[process.address_variable] = f"127.0.0.1:{_free_port()}"
        # This process signs its direct calls as the operator, with the platform's
        # development key in its data folder.
        os.environ["MANTELZORG_DATA_DIR"] = environ["MANTELZORG_DATA_DIR"]
        declare_topology({"AMQP_URI": amqp})
        platform = Platform(environ, logs=os.path.join(folder, "logs"))
        platform.start()
        try:
            platform.wait_until_healthy()
            yield platform
        finally:
            # A throwaway platform: BENCH_STOP_GRACE_SECONDS=0 kills it at once, where a
            # graceful stop takes seconds that measure nothing.
            platform.stop(grace=settings.float_setting(None, "BENCH_STOP_GRACE_SECONDS", 15))
            delete_vhost(base, vhost)


def direct_rpc(amqp_uri, timeout=30):
    """An RPC client that publishes its calls as the gateway does (common/transport.py), so
    that 'direct RPC' and 'through the gateway' differ only by the gateway."""
    return SignedClusterRpcProxy({"AMQP_URI": amqp_uri}, timeout=timeout)


class GraphQLOverHttp:
    """A keep-alive HTTP client as light as the RPC client it is compared with, so that the
    benchmark's own client work is not counted as the gateway's."""

    def __init__(self, gateway_url, headers=None, timeout=30):
        address = gateway_url.split("://", 1)[1]
        host, port = address.rsplit(":", 1)
        self.connection = http.client.HTTPConnection(host, int(port), timeout=timeout)
        self.connection.connect()   # before the timed requests, as the RPC client does
        self.headers = {"Content-Type": "application/json", **(headers or {})}

    def query(self, query, variables):
        self.connection.request("POST", "/graphql", json.dumps(
            {"query": query, "variables": variables}), self.headers)
        return json.loads(self.connection.getresponse().read())

    def get(self, path):
        self.connection.request("GET", path)
        response = self.connection.getresponse()
        response.read()
        return response.status

    def close(self):
        self.connection.close()


def graphql_load(gateway_url, query, variables_for, field, accept=bool, headers=dict):
    """Per client: one keep-alive connection sending ``query`` with ``variables_for(i)``.
    An answer with errors, or whose ``field`` ``accept`` refuses, counts as an error.
    ``headers()`` gives each client its own headers (a token of its own, say)."""
    def make():
        client = GraphQLOverHttp(gateway_url, headers())

        def call(index):
            answer = client.query(query, variables_for(index))
            value = (answer.get("data") or {}).get(field)
            if "errors" in answer or value is None or not accept(value):
                raise AssertionError(str(answer)[:200])
        return call, client.close
    return make


def rpc_load(amqp_uri, call_with):
    """Per client: an RPC proxy of its own; ``call_with(proxy, i)`` makes one call and raises
    on a wrong answer."""
    def make():
        proxy = direct_rpc(amqp_uri)
        cluster = proxy.start()
        return (lambda index: call_with(cluster, index)), proxy.stop
    return make


class CpuClock:
    """CPU seconds (user + system) of the platform's processes and of this one, the load
    generator, so that a run can say which process spent what per request."""

    def __init__(self, platform, *names):
        self.pids = {name: child.pid for name, child in platform.children.items()
                     if name in names}

    def read(self):
        ticks = os.sysconf("SC_CLK_TCK")
        seconds = {}
        for name, pid in self.pids.items():
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            seconds[name] = (int(fields[11]) + int(fields[12])) / ticks
        usage = resource.getrusage(resource.RUSAGE_SELF)
        seconds["client"] = usage.ru_utime + usage.ru_stime
        return seconds


class PeakMemory:
    """The peak resident memory of one platform process over a stretch of work: ``start()``
    resets the kernel's high-water mark (VmHWM), ``peak_mb()`` reads it."""

    def __init__(self, platform, name):
        self.pid = platform.children[name].pid

    def _status(self, field):
        with open(f"/proc/{self.pid}/status") as status:
            line = next(line for line in status if line.startswith(field + ":"))
        return int(line.split()[1]) / 1024

    def start(self):
        with open(f"/proc/{self.pid}/clear_refs", "w") as refs:
            refs.write("5")
        self.before_mb = self._status("VmRSS")

    def peak_mb(self):
        return self._status("VmHWM")


def measure(make_client, requests_total, concurrency, rate=None, cpu=None):
    """Runs ``requests_total`` calls spread over ``concurrency`` clients. ``make_client()``
    returns, per client, ``(call, close)``: ``call(i)`` does one request and raises on a wrong
    answer. Returns latencies in milliseconds and throughput, and with a ``CpuClock`` the
    CPU milliseconds per request of every process that spent at least 0.05 ms.

    Without ``rate`` every client sends its next request as soon as it has an answer: the
    platform's saturation, where latency is about concurrency / throughput. With ``rate``
    (requests per second, all clients together) each client keeps a steady pace, as people
    at desks do; a latency then counts from when the request was due, so a platform that
    falls behind is not flattered."""
    requests_total = min(requests_total, size("MAX_REQUESTS", requests_total))
    concurrency = min(concurrency, size("MAX_CONCURRENCY", concurrency))
    latencies, errors = [], []
    lock = threading.Lock()
    counter = iter(range(requests_total))
    # time for every client to connect first
    begin = time.perf_counter() + settings.float_setting(None, "BENCH_CONNECT_SECONDS", 1.0)

    def worker():
        call, close = make_client()
        try:
            while True:
                with lock:
                    index = next(counter, None)
                if index is None:
                    return
                started = time.perf_counter()
                if rate:
                    due = begin + index / rate
                    if due > started:
                        time.sleep(due - started)
                    started = due
                try:
                    call(index)
                except Exception as error:  # counted, reported, never hidden
                    with lock:
                        errors.append(repr(error)[:200])
                    continue
                elapsed = (time.perf_counter() - started) * 1000
                with lock:
                    latencies.append(elapsed)
        finally:
            close()

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    cpu_before = cpu.read() if cpu else {}
    started = begin if rate else time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    summary = summarise(latencies, errors, wall)
    if errors:
        PROBLEMS.append(f"{len(errors)} of {requests_total} requests failed: {errors[0]}")
    if cpu and latencies:
        spent = {name: (seconds - cpu_before[name]) * 1000 / len(latencies)
                 for name, seconds in cpu.read().items()}
        summary["cpu_ms"] = {name: ms for name, ms in spent.items() if ms >= 0.05}
    return summary


def capacity(make_client, concurrency, p99_limit_ms=50, rates=None, seconds=None, cpu=None):
    """The highest steady rate (requests per second of all clients together) at which p99
    stays under the limit, stepping up by 50 (up to BENCH_CAPACITY_MAX_RATE, 1000) until it
    does not or errors appear, each step BENCH_CAPACITY_SECONDS (8) long. Returns that rate
    (0 if even the first fails) and the summary of every step."""
    rates = rates or range(50, size("CAPACITY_MAX_RATE", 1000) + 1, 50)
    seconds = seconds or settings.float_setting(None, "BENCH_CAPACITY_SECONDS", 8)
    steps, best = [], 0
    for rate in rates:
        result = measure(make_client, int(rate * seconds), concurrency, rate=rate, cpu=cpu)
        steps.append((rate, result))
        if result["errors"] or result["p99_ms"] >= p99_limit_ms:
            break
        best = rate
    return best, steps


def summarise(latencies, errors, wall):
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] if ordered else float("nan")
    return {
        "requests": len(latencies), "errors": len(errors), "first_error": errors[0] if errors else "",
        "median_ms": statistics.median(ordered) if ordered else float("nan"),
        "p99_ms": p99, "rps": len(latencies) / wall if wall else 0.0,
    }


def print_table(title, rows):
    """rows: (label, summary) pairs."""
    print(f"\n{title}")
    print(f"  {'':<44} {'median ms':>10} {'p99 ms':>8} {'req/s':>8} {'errors':>7}   "
          f"CPU ms per request")
    for label, result in rows:
        spent = ", ".join(f"{name} {ms:.2f}" for name, ms in result.get("cpu_ms", {}).items())
        print(f"  {label:<44} {result['median_ms']:>10.2f} {result['p99_ms']:>8.2f} "
              f"{result['rps']:>8.1f} {result['errors']:>7}   {spent}")
        if result["first_error"]:
            print(f"    first error: {result['first_error']}")


def print_capacity(label, best, steps, p99_limit_ms=50):
    tried = "; ".join(f"{rate}: p99 {result['p99_ms']:.1f} ms" for rate, result in steps)
    print(f"  {label}: p99 under {p99_limit_ms} ms up to {best} req/s  ({tried})")


def wait_for_outbox(rpc, service, timeout=600):
    """Until the service has published every event it recorded: a run is measured without
    its relay still at work."""
    deadline = time.monotonic() + timeout
    # The health answer's figure is the relay's estimate, set again each time it catches up.
    while getattr(rpc, service).health()["outbox_pending"] and time.monotonic() < deadline:
        time.sleep(1.0)


def wait_until_municipality_known(rpc, code, timeout=60):
    """The declaration service learns municipalities from the registry's events."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return rpc.declaration.municipality_settings(code)
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def verdict(label, ok):
    print(f"  target {label}: {'met' if ok else 'NOT met'}")
    return ok


def development_token(platform, role, sub, **claims):
    """A token the platform's gateway accepts (signed with its development secret)."""
    return issue_development_token(platform.environ["MANTELZORG_JWT_SECRET"], role, sub,
                                   **claims)



TYPENAME = "{ __typename }"


def typename_client(gateway_url, headers=dict):
    """``{__typename}`` through the gateway: a GraphQL request that asks no service, the
    gateway's own ceiling for a query."""
    return graphql_load(gateway_url, TYPENAME, lambda _index: {}, "__typename", headers=headers)


def gateway_targets(label, path_back_to_back, typename_back_to_back, steady, best_rate):
    """The gateway's targets of issue 26 for one path, measured in the same run: its
    throughput back to back at least 50 % of ``{__typename}``'s, the gateway's CPU per
    request at a steady pace at most 1.3 times back to back, and p99 under 50 ms at 200
    requests a second with 50 clients (``best_rate`` from ``capacity``)."""
    share = path_back_to_back["rps"] / typename_back_to_back["rps"]
    print(f"  {label}: {path_back_to_back['rps']:.0f} req/s back to back, "
          f"{share:.0%} of {{__typename}}'s {typename_back_to_back['rps']:.0f} (target at least 50 %)")
    ok = verdict(f"{label} at least 50 % of the gateway's {{__typename}} throughput", share >= 0.5)
    steady_cpu = steady.get("cpu_ms", {}).get("gateway")
    busy_cpu = path_back_to_back.get("cpu_ms", {}).get("gateway")
    if steady_cpu and busy_cpu:
        ratio = steady_cpu / busy_cpu
        print(f"  {label}: gateway CPU {steady_cpu:.2f} ms a request at a steady pace, "
              f"{busy_cpu:.2f} ms back to back: {ratio:.2f} x (target at most 1.3)")
        ok &= verdict(f"{label} steady CPU at most 1.3 x back to back", ratio <= 1.3)
    print(f"  {label}: p99 under 50 ms up to {best_rate} req/s with 50 clients (target 200)")
    ok &= verdict(f"{label} p99 under 50 ms at 200 req/s", best_rate >= 200)
    return ok
