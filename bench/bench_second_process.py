"""What a second process of a service adds, with the development store as a process of its
own (MANTELZORG_STORE=process), and that store against the embedded one.

Per path, back to back: checkDeclaration through the gateway (50 clients), registry search
by postcode through the gateway (50 clients) and travel claim submission as direct RPC (20
clients, as bench_travel_claims). Each is measured on a platform with the embedded store
(one process of each service), then on one with the store as a process, first with one
process of the service and then with two; the ratios are printed beside the times, with
the CPU each process spent per request (``store`` is the store's process, ``<service>-2``
the second process). The platform with the store as a process starts a second process of
every measured service and keeps only the one measured running.

Sizes: BENCH_SECOND_REQUESTS (2,000 a row), BENCH_SECOND_DECLARATIONS (500 issued
declarations checked), BENCH_POINTS (support points, bench_registry_search),
BENCH_TRAVEL_CAREGIVERS (bench_travel_claims) and the harness's settings
(bench/harness.py, BENCH_REFERENCE_DIR above all)."""
import csv
import random
import time

from bench import bench_registry_search as registry_search
from bench.bench_declaration_check import SECRET, file_declarations, gateway_check_client
from bench.bench_travel_claims import CAREGIVERS, Claims, caregivers, rpc_submissions
from bench.harness import (CpuClock, graphql_load, measure, print_table, problem,
                           reference_folder, running_platform, size, verdict, wait_for_outbox)
from common import config as settings

REQUESTS = size("SECOND_REQUESTS", 2000)
DECLARATIONS = size("SECOND_DECLARATIONS", 500)
WARM_UP, WARM_UP_CLIENTS = 200, 10
# Path: (its service, the entrypoint the service answers it with, clients at once).
PATHS = {
    "checkDeclaration through the gateway": ("declaration", "check_declaration", 50),
    "registry search by postcode through the gateway": ("registry", "search_support_points",
                                                        50),
    "travel claim submission, direct RPC": ("travel_costs", "submit_travel_claim", 20),
}
SERVICES = sorted({service for service, _, _ in PATHS.values()})
PLATFORM_SETTINGS = {"MANTELZORG_JWT_SECRET": SECRET, "TRAVEL_ANNUAL_CAP": "100000000",
                     "GATEWAY_MAX_WORKERS": "60", "DECLARATION_MAX_WORKERS": "60",
                     "REGISTRY_MAX_WORKERS": "60", "TRAVEL_COSTS_MAX_WORKERS": "40"}
STORE_AS_PROCESS = {"MANTELZORG_STORE": "process",
                    "MANTELZORG_REPLICAS": ",".join(f"{service}=2" for service in SERVICES)}


def second(service):
    return f"{service}-2"


def load(platform):
    """Reference data and support points (as bench_registry_search loads them), issued
    declarations to check, caregivers with an issued declaration to claim for; the clients
    of each path."""
    rows = list(csv.DictReader(open(reference_folder() / "pc4.csv", encoding="utf-8")))
    with platform.rpc(timeout=600) as rpc:
        registry_search.load(rpc, rows)
        while rpc.travel_costs.health()["pc4_areas"] < len(rows):
            time.sleep(0.5)
    stored = []
    file_declarations(platform, stored, DECLARATIONS)
    people = caregivers(rows, CAREGIVERS, random.Random(11))
    started = time.perf_counter()
    with platform.rpc(timeout=600) as rpc:
        for person in people:
            person.request_and_issue(rpc)
    print(f"  {len(people)} caregivers with an issued declaration in "
          f"{time.perf_counter() - started:.0f} s")
    _, query, field, variables = registry_search.search_calls(_postcodes(rows))[
        "search by postcode"]
    return {
        "checkDeclaration through the gateway": gateway_check_client(platform, stored),
        "registry search by postcode through the gateway": graphql_load(
            platform.gateway_url(), query, variables, field),
        "travel claim submission, direct RPC": rpc_submissions(
            platform.environ["AMQP_URI"], Claims(people, seed=5)),
    }


def _postcodes(rows):
    rng = random.Random(7)
    return [f"{rng.choice(rows)['pc4']} {rng.choice('ABCDEFGH')}{rng.choice('ABCDEFGH')}"
            for _ in range(500)]


def measured(platform, path, client):
    """A warm-up, then the path back to back; the platform's processes' CPU per request."""
    service, _, concurrency = PATHS[path]
    # Fewer clients while the caches fill: a cold process at full load answers late.
    measure(client, WARM_UP, WARM_UP_CLIENTS)
    cpu = CpuClock(platform, "gateway", "store", "declaration", service, second(service))
    result = measure(client, REQUESTS, concurrency, cpu=cpu)
    if service == "travel_costs":       # the next run starts with every event published
        with platform.rpc(timeout=600) as rpc:
            wait_for_outbox(rpc, "travel_costs")
    return result


def served(platform, name, entrypoint):
    return sum(sample.value for sample in platform.metric_samples(name)
               if sample.name == "mantelzorg_entrypoint_requests_total"
               and sample.labels.get("entrypoint") == entrypoint)


def grace():
    return settings.float_setting(None, "BENCH_STOP_GRACE_SECONDS", 15)


def run():
    results = {path: {} for path in PATHS}
    with running_platform(**PLATFORM_SETTINGS) as platform:
        print("the embedded store in every process")
        clients = load(platform)
        for path, client in clients.items():
            results[path]["embedded"] = measured(platform, path, client)
    with running_platform(**PLATFORM_SETTINGS, **STORE_AS_PROCESS) as platform:
        print("the store as a process of its own")
        for service in SERVICES:      # only the measured service's second process runs
            platform.stop_process(platform.instance(second(service)), grace())
        clients = load(platform)
        for path, client in clients.items():
            service, entrypoint, _ = PATHS[path]
            results[path]["one"] = measured(platform, path, client)
            replica = platform.instance(second(service))
            platform.start_process(replica)
            platform.wait_until_healthy(names=[service])
            before = served(platform, replica.name, entrypoint)
            results[path]["two"] = measured(platform, path, client)
            if served(platform, replica.name, entrypoint) - before <= 0:
                problem(f"{path}: the second {service} process served none of the requests")
            platform.stop_process(replica, grace())
    return report(results)


def cpu_in_all(result):
    """CPU milliseconds per request of the platform's processes together (not the client)."""
    return sum(ms for name, ms in result.get("cpu_ms", {}).items() if name != "client")


def report(results):
    ok = True
    for path, runs in results.items():
        service, _, concurrency = PATHS[path]
        print_table(f"{path}: {concurrency} clients back to back, {REQUESTS:,} requests a row",
                    [("embedded store, 1 process of each", runs["embedded"]),
                     (f"store as a process, 1 {service}", runs["one"]),
                     (f"store as a process, 2 {service}", runs["two"])])
        embedded, one, two = (runs[key] for key in ("embedded", "one", "two"))
        if not (embedded["rps"] and one["rps"]):
            continue
        print(f"  a second {service} process: {two['rps'] / one['rps']:.2f} times the "
              f"throughput ({one['rps']:.0f} -> {two['rps']:.0f} req/s), CPU in all "
              f"{cpu_in_all(one):.2f} -> {cpu_in_all(two):.2f} ms a request")
        print(f"  the store as a process against the embedded store, one {service} process: "
              f"{one['rps'] / embedded['rps']:.2f} times the throughput "
              f"({embedded['rps']:.0f} -> {one['rps']:.0f} req/s), CPU in all "
              f"{cpu_in_all(embedded):.2f} -> {cpu_in_all(one):.2f} ms a request")
        ok &= verdict(f"{path} without errors", not any(r["errors"] for r in runs.values()))
    return ok
