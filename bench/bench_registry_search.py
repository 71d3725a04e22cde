"""Registry search: by postcode and nearest, through the gateway next to direct RPC.

All 342 municipalities, 4,067 PC4 areas and 5,000 support points (spread deterministically
over real PC4 areas) are loaded, then each search runs at 50 concurrent clients.
Targets: the gateway adds at most 30% to the median RPC time; p99 under 50 ms with 50
clients at a steady pace. Also printed: 50 clients back to back (saturation), the highest
steady rate that keeps p99 under 50 ms, and the CPU each process spends per request.
Sizes: BENCH_POINTS (5,000 support points), BENCH_SEARCH_REQUESTS (2,000 a row) and the
harness's settings (bench/harness.py)."""
import csv
import random
import time

from bench.harness import (CpuClock, GraphQLOverHttp, capacity, graphql_load, measure,
                           print_capacity, print_table, reference_folder, rpc_load,
                           running_platform, size, verdict, wait_for_outbox)
from ops import reference

POINTS = size("POINTS", 5000)
REQUESTS = size("SEARCH_REQUESTS", 2000)
CONCURRENCY = 50
STEADY_RATE = 100      # requests per second of all 50 clients together, for the paced run
AREAS = ("INFORMATION", "ADVICE_AND_GUIDANCE", "EMOTIONAL_SUPPORT", "EDUCATION",
         "PRACTICAL_HELP", "RESPITE_CARE", "FINANCIAL_SUPPORT", "MATERIAL_SUPPORT")
BY_POSTCODE = """query($p: String!) { supportPoints(postcode: $p, first: 20) {
    items { id name address { postcode city } areas } total nextCursor } }"""
NEAREST = """query($p: String!) { nearestSupportPoints(postcode: $p, limit: 5) {
    id name address { postcode city } areas } }"""


def support_point_rows(pc4_rows, count=POINTS, seed=2026):
    rng = random.Random(seed)
    rows = []
    for n in range(count):
        area = rng.choice(pc4_rows)
        serves = [rng.choice(pc4_rows)["gemeentecode"]] if rng.random() < 0.1 else []
        rows.append({
            "external_id": f"BENCH-{n:05d}",
            "name": f"Steunpunt {area['woonplaats'] or area['pc4']} {n}",
            "kind": "REGIONAL" if serves else "LOCAL", "municipality_code": area["gemeentecode"],
            "serves_municipality_codes": ";".join(serves), "street": "Hoofdstraat",
            "house_number": str(1 + n % 200), "postcode": f"{area['pc4']} AB",
            "city": area["woonplaats"] or area["gemeentenaam"], "phone": "",
            "email": f"steunpunt{n}@example.org", "website": "",
            "areas": ";".join(rng.sample(AREAS, 3)),
        })
    return rows


def load(rpc, pc4_rows):
    started = time.perf_counter()
    reports = reference.import_reference(rpc, reference_folder())
    print(f"  reference data: {reference.summary('municipalities', reports['municipalities'])}; "
          f"{reference.summary('pc4 areas', reports['pc4_areas'])} "
          f"in {time.perf_counter() - started:.1f} s")
    started = time.perf_counter()
    rows = support_point_rows(pc4_rows)
    totals = {"registered": 0, "rejected": 0}
    for start, chunk in reference.batches(rows):
        part = rpc.registry.import_support_points(chunk, reference.IMPORTER, first_row=start + 2)
        totals["registered"] += part["registered"]
        totals["rejected"] += len(part["rejected"])
    # The searches are measured with every event published, not while the relay still works.
    wait_for_outbox(rpc, "registry")
    print(f"  support points: {totals['registered']} registered, {totals['rejected']} rejected "
          f"in {time.perf_counter() - started:.1f} s, events published")


def search_calls(postcodes):
    """The two searches, each as a direct RPC call and as its GraphQL query and field."""
    def postcode(index):
        return postcodes[index % len(postcodes)]

    def search(proxy, index):
        assert "total" in proxy.registry.search_support_points(postcode=postcode(index), first=20)

    def nearest(proxy, index):
        assert proxy.registry.nearest_support_points(postcode(index), None, 5)

    def variables(index):
        return {"p": postcode(index)}

    return {"search by postcode": (search, BY_POSTCODE, "supportPoints", variables),
            "nearestSupportPoints": (nearest, NEAREST, "nearestSupportPoints", variables)}


def liveness_client(url):
    """GET /health on the gateway: an HTTP request that reaches no service, the gateway's
    fixed cost per request."""
    def make():
        client = GraphQLOverHttp(url)

        def call(_index):
            assert client.get("/health") == 200
        return call, client.close
    return make


def run():
    pc4_rows = list(csv.DictReader(open(reference_folder() / "pc4.csv", encoding="utf-8")))
    rng = random.Random(7)
    postcodes = [f"{rng.choice(pc4_rows)['pc4']} {rng.choice('ABCDEFGH')}{rng.choice('ABCDEFGH')}"
                 for _ in range(500)]
    with running_platform() as platform:
        amqp_uri = platform.environ["AMQP_URI"]
        url = platform.gateway_url()
        with platform.rpc(timeout=300) as rpc:
            load(rpc, pc4_rows)
        cpu = CpuClock(platform, "gateway", "registry")
        results = {}
        for name, (rpc_call, query, field, variables) in search_calls(postcodes).items():
            direct = rpc_load(amqp_uri, rpc_call)
            gateway = graphql_load(url, query, variables, field)
            measure(direct, 200, 10)       # warm up both paths first
            measure(gateway, 200, 10)
            results[name] = {
                "steady direct": measure(direct, REQUESTS, CONCURRENCY, rate=STEADY_RATE, cpu=cpu),
                "steady gateway": measure(gateway, REQUESTS, CONCURRENCY, rate=STEADY_RATE,
                                          cpu=cpu),
                "direct": measure(direct, REQUESTS, CONCURRENCY, cpu=cpu),
                "gateway": measure(gateway, REQUESTS, CONCURRENCY, cpu=cpu),
                "capacity": capacity(gateway, CONCURRENCY),
            }
        liveness = measure(liveness_client(url), REQUESTS, CONCURRENCY, rate=STEADY_RATE, cpu=cpu)
    return report(results, liveness)


def report(results, liveness):
    met = True
    for name, result in results.items():
        print_table(f"{name}: {POINTS} support points, {CONCURRENCY} concurrent clients, "
                    f"{REQUESTS} requests a row",
                    [(f"direct RPC, steady {STEADY_RATE} req/s", result["steady direct"]),
                     (f"GraphQL gateway, steady {STEADY_RATE} req/s", result["steady gateway"]),
                     ("direct RPC, back to back", result["direct"]),
                     ("GraphQL gateway, back to back", result["gateway"])])
        print_capacity(f"GraphQL gateway, {CONCURRENCY} clients", *result["capacity"])
        direct, gateway = result["steady direct"], result["steady gateway"]
        # Compared at the same steady load: there a median is the path's own time, while back
        # to back it is mostly queueing and follows the throughput.
        overhead = gateway["median_ms"] / direct["median_ms"] - 1
        print(f"  gateway adds {overhead:.0%} to the median RPC time at a steady "
              f"{STEADY_RATE} req/s ({gateway['median_ms']:.1f} vs {direct['median_ms']:.1f} ms)")
        met &= verdict("gateway adds <= 30% over RPC", overhead <= 0.30)
        met &= verdict(f"gateway p99 < 50 ms, {CONCURRENCY} clients at a steady "
                       f"{STEADY_RATE} req/s", gateway["p99_ms"] < 50)
        met &= verdict("no errors", not any(result[key]["errors"] for key in (
            "steady direct", "steady gateway", "direct", "gateway")))
    print_table("the gateway's fixed cost: GET /health, no service called",
                [(f"gateway liveness, steady {STEADY_RATE} req/s", liveness)])
    print(f"\n  all registry search targets: {'met' if met else 'NOT met'}")
    return met
