"""checkDeclaration at 50 concurrent clients, through the gateway and as direct RPC, with
10,000 and with 100,000 issued declarations stored.

Targets (issue 4): p99 under 50 ms through the gateway with 50 clients at a steady pace, and
no growth of the check time between 10,000 and 100,000 stored declarations. Also printed:
50 clients back to back (saturation), the highest steady rate that keeps p99 under 50 ms,
and the CPU each process spends per check. The declarations are stored through the
service's bulk path (``seed_issued_declarations``, switched on for this run only)."""
import os
import random

from bench.harness import (CpuClock, capacity, graphql_load, measure, print_capacity,
                           print_table, rpc_load, running_platform, verdict)
from gateway.auth import issue_development_token

SECRET = "bench-secret-of-thirty-two-bytes-or-more"
CONCURRENCY = 50
REQUESTS = int(os.environ.get("BENCH_CHECK_REQUESTS", "3000"))
SIZES = (10_000, 100_000)
STEADY_RATE = 100      # requests per second of all 50 clients together, for the paced run
BATCH = 500
CODE = "BNCH-CHCK-2026"
CHECK = """query($reference: String!, $code: String!, $purpose: DeclarationPurpose!) {
  checkDeclaration(reference: $reference, verificationCode: $code, purpose: $purpose) {
    valid status validUntil purposeAccepted municipalityCode } }"""


def _reference(stored):
    return f"MZV-1999-{random.randint(1, stored):06d}"


def _seed(platform, start, end):
    with platform.rpc(timeout=300) as rpc:
        for first in range(start, end, BATCH):
            count = min(BATCH, end - first)
            assert rpc.declaration.seed_issued_declarations("GM0363", first, count, CODE) == count


def _gateway_client(platform, stored):
    def partner_token():      # every client a partner of its own, as desks are
        return {"Authorization": "Bearer " + issue_development_token(
            SECRET, "partner", f"bench-partner-{random.random()}")}

    return graphql_load(platform.gateway_url(), CHECK, lambda _index: {
        "reference": _reference(stored), "code": CODE, "purpose": "PARKING_PERMIT"},
        "checkDeclaration", accept=lambda answer: answer["valid"], headers=partner_token)


def _rpc_client(platform, stored):
    def check(proxy, _index):
        client = f"partner:bench-{random.random()}"
        answer = proxy.declaration.check_declaration(_reference(stored), CODE, "PARKING_PERMIT",
                                                     client)
        if not answer["valid"]:
            raise AssertionError(str(answer))
    return rpc_load(platform.environ["AMQP_URI"], check)


def run():
    results = {}
    with running_platform(MANTELZORG_JWT_SECRET=SECRET, DECLARATION_ALLOW_SEEDING="1",
                          GATEWAY_MAX_WORKERS="60", DECLARATION_MAX_WORKERS="60") as platform:
        cpu = CpuClock(platform, "gateway", "declaration")
        stored = 0
        for size in SIZES:
            _seed(platform, stored + 1, size + 1)
            stored = size
            gateway, direct = _gateway_client(platform, stored), _rpc_client(platform, stored)
            measure(gateway, 200, CONCURRENCY)      # a short warm-up, then the measured runs
            measure(direct, 200, CONCURRENCY)
            for path, client in (("rpc", direct), ("gateway", gateway)):
                results[(f"{path} steady", size)] = measure(client, REQUESTS, CONCURRENCY,
                                                            rate=STEADY_RATE, cpu=cpu)
            for path, client in (("rpc", direct), ("gateway", gateway)):
                results[(path, size)] = measure(client, REQUESTS, CONCURRENCY, cpu=cpu)
        largest = capacity(_gateway_client(platform, stored), CONCURRENCY)
    return report(results, largest)


def report(results, largest):
    labels = {"rpc steady": f"rpc, steady {STEADY_RATE} req/s",
              "gateway steady": f"gateway, steady {STEADY_RATE} req/s",
              "rpc": "rpc, back to back", "gateway": "gateway, back to back"}
    print_table(f"checkDeclaration, {CONCURRENCY} concurrent clients, {REQUESTS} requests a row",
                [(f"{labels[path]}, {size:,} stored", results[(path, size)])
                 for size in SIZES for path in labels])
    print_capacity(f"gateway, {CONCURRENCY} clients, {SIZES[-1]:,} stored", *largest)
    small_steady = results[("gateway steady", SIZES[0])]
    large_steady = results[("gateway steady", SIZES[-1])]
    ok = verdict(f"gateway p99 under 50 ms at {SIZES[-1]:,} stored, {CONCURRENCY} clients at a "
                 f"steady {STEADY_RATE} req/s", large_steady["p99_ms"] < 50)
    # 'does not grow': compared at the same steady load, where a median is the check's own
    # time; back to back it is mostly queueing and moves with the run's throughput. Within
    # 25 % (or 2 ms) of the median at 10,000.
    grows = large_steady["median_ms"] > max(small_steady["median_ms"] * 1.25,
                                            small_steady["median_ms"] + 2)
    ok &= verdict(f"check time does not grow from {SIZES[0]:,} to {SIZES[-1]:,} stored", not grows)
    ok &= verdict("no errors", all(r["errors"] == 0 for r in results.values()))
    return ok
