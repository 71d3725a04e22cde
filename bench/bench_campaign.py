"""Campaign: the registry → campaign read model, a national launch and an allocation round.

All 342 municipalities and 4,067 PC4 areas are loaded, then:
- 5,000 support points are registered through the registry's import (batches of 200) while
  the campaign service projects their events: the registry's write rate, the campaign's
  events per second end to end, and how far the read model lags behind the registry (the
  registry's count as the public overview gives it, the campaign's as its /metrics do);
- a national campaign is launched to those 5,000 points, once as a direct RPC and once
  through the gateway: seconds and the campaign process's peak memory;
- 2,000 orders from all 342 municipalities wait for bags, and an allocation round shares a
  print run of 40,000 over them, once as a direct RPC and once (after a second print run)
  through the gateway: seconds and peak memory.
The campaign process holds its embedded document store, so its memory includes the store's.
Sizes: BENCH_POINTS, BENCH_CAMPAIGN_ORDERS (at least one per municipality),
BENCH_CAMPAIGN_PRINT_RUN and the harness's settings (bench/harness.py)."""
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta

from bench.bench_registry_search import POINTS, support_point_rows
from bench.harness import (GraphQLOverHttp, PeakMemory, development_token, problem,
                           reference_folder, running_platform, size)
from ops import reference

ORDERS = size("CAMPAIGN_ORDERS", 2000)
PRINT_RUN = size("CAMPAIGN_PRINT_RUN", 40_000)
TEAM = {"sub": "bench", "role": "campaign"}
ACTIVE_POINTS = "{ supportPoints(first: 1) { total } }"
LAUNCH = """mutation($id: ID!) { launchCampaign(id: $id) { id reachedSupportPoints } }"""
ROUND = """mutation { runBagAllocation { id availableBefore allocated
    allocations { allocatedNow explanation order { id status quantityAllocated } } } }"""


def follow_read_model(platform, registered, stop, samples):
    """Samples (time, points the registry holds, points the campaign's read model has taken
    in) until ``stop`` is set and the read model has taken in ``registered()`` points."""
    registry = GraphQLOverHttp(platform.gateway_url(), timeout=60)
    try:
        while True:
            now = time.perf_counter()
            held = registry.query(ACTIVE_POINTS, {})["data"]["supportPoints"]["total"]
            samples.append((now, held,
                            platform.events_handled("campaign", "support_point.registered")))
            if stop.is_set() and samples[-1][2] >= registered():
                return
            time.sleep(0.1)
    finally:
        registry.close()


def lags(samples):
    """For each sample: how long ago the registry first held as many points as the read
    model holds now (0 while it keeps up)."""
    found = []
    for when, _, projected in samples:
        first = next((t for t, held, _ in samples if held >= projected), when)
        found.append(max(0.0, when - first))
    return found


def register_points(platform, pc4_rows):
    """Registers the points while a thread follows the read model; returns the numbers."""
    rows = support_point_rows(pc4_rows)
    samples, stop = [], threading.Event()
    totals = {"registered": 0}
    follower = threading.Thread(target=follow_read_model, args=(
        platform, lambda: totals["registered"], stop, samples))
    with platform.rpc(timeout=300) as rpc:
        # a fresh platform: no point registered, no event handled yet
        base_registry = 0
        follower.start()
        started = time.perf_counter()
        for start, chunk in reference.batches(rows):
            part = rpc.registry.import_support_points(chunk, reference.IMPORTER,
                                                      first_row=start + 2)
            totals["registered"] += part["registered"]
        written = time.perf_counter()
    totals["registered"] += base_registry
    stop.set()
    follower.join()
    projected = next(t for t, _, held in samples if held >= totals["registered"])
    lag = lags(samples)
    ordered = sorted(lag)
    return {"points": totals["registered"] - base_registry,
            "registry_rate": (totals["registered"] - base_registry) / (written - started),
            "campaign_rate": (totals["registered"] - base_registry) / (projected - started),
            "registry_seconds": written - started, "campaign_seconds": projected - started,
            "lag_median": ordered[len(ordered) // 2], "lag_max": ordered[-1],
            "lag_at_end": max(0.0, projected - written)}


def timed(memory, work):
    memory.start()
    started = time.perf_counter()
    answer = work()
    return answer, time.perf_counter() - started, memory.peak_mb(), memory.before_mb


def new_campaign(rpc, label):
    return rpc.campaign.create_campaign({
        "name": f"#deeljezorg landelijk ({label})", "hashtag": "deeljezorg", "scope": "NATIONAL",
        "startsOn": date.today().isoformat(),
        "endsOn": (date.today() + timedelta(days=90)).isoformat(),
        "materials": ["poster A2", "flyer", "social media kit"]}, TEAM)


def launches(platform, gateway, memory):
    with platform.rpc(timeout=300) as rpc:
        direct_id = new_campaign(rpc, "direct")["id"]
        gateway_id = new_campaign(rpc, "gateway")["id"]
        direct = timed(memory, lambda: rpc.campaign.launch_campaign(direct_id, TEAM))
    through = timed(memory, lambda: gateway.query(LAUNCH, {"id": gateway_id}))
    reached = through[0].get("data", {}) and through[0]["data"]["launchCampaign"][
        "reachedSupportPoints"]
    return {"direct": direct[1:], "direct_reached": direct[0]["reached_support_points"],
            "gateway": through[1:], "gateway_reached": reached,
            "gateway_errors": through[0].get("errors")}


def place_orders(platform, municipality_rows):
    """2,000 waiting orders: one from every municipality, the rest spread at random."""
    rng = random.Random(2026)
    codes = [row["gemeentecode"] for row in municipality_rows]
    wanted = codes + [rng.choice(codes) for _ in range(ORDERS - len(codes))]
    quantities = [rng.randint(20, 80) for _ in wanted]

    def place(batch):
        with platform.rpc(timeout=120) as rpc:
            return [rpc.campaign.order_bags({"municipalityCode": code, "quantity": quantity},
                                            TEAM)["status"] for code, quantity in batch]

    batches = [list(zip(wanted, quantities))[n::8] for n in range(8)]
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = [status for part in pool.map(place, batches) for status in part]
    return {"orders": len(statuses), "waiting": statuses.count("REQUESTED"),
            "asked": sum(quantities), "seconds": time.perf_counter() - started}


def rounds(platform, gateway, memory):
    with platform.rpc(timeout=300) as rpc:
        rpc.campaign.add_print_run(PRINT_RUN, TEAM)
        direct = timed(memory, lambda: rpc.campaign.run_bag_allocation(TEAM))
        rpc.campaign.add_print_run(PRINT_RUN, TEAM)
        through = timed(memory, lambda: gateway.query(ROUND, {}))
        stock = rpc.campaign.bag_stock(TEAM)
    answer = through[0].get("data") or {}
    return {"direct": direct[1:], "direct_orders": len(direct[0]["allocations"]),
            "direct_allocated": direct[0]["allocated"],
            # the second round shares over the orders the first one left waiting
            "still_waiting": sum(a["order"]["status"] == "REQUESTED"
                                 for a in direct[0]["allocations"]),
            "gateway": through[1:], "gateway_errors": through[0].get("errors"),
            "gateway_orders": len((answer.get("runBagAllocation") or {}).get("allocations", [])),
            "gateway_allocated": (answer.get("runBagAllocation") or {}).get("allocated"),
            "stock": stock}


def run():
    folder = reference_folder()
    pc4_rows = reference.read_rows(folder / "pc4.csv")
    municipality_rows = reference.read_rows(folder / "municipalities.csv")
    with running_platform(GATEWAY_RPC_TIMEOUT_SECONDS="300") as platform:
        with platform.rpc(timeout=300) as rpc:
            reference.import_reference(rpc, folder)
        memory = PeakMemory(platform, "campaign")
        gateway = GraphQLOverHttp(platform.gateway_url(), {
            "Authorization": f"Bearer {development_token(platform, 'campaign', 'bench')}"},
            timeout=300)
        try:
            read_model = register_points(platform, pc4_rows)
            print(f"  {read_model['points']:,} support points registered and projected")
            launched = launches(platform, gateway, memory)
            print(f"  launched: direct {launched['direct'][0]:.1f} s, "
                  f"gateway {launched['gateway'][0]:.1f} s")
            placed = place_orders(platform, municipality_rows)
            print(f"  {placed['orders']:,} orders placed in {placed['seconds']:.1f} s")
            shared = rounds(platform, gateway, memory)
        finally:
            gateway.close()
    return report(read_model, launched, placed, shared, len(municipality_rows))


def _cost(label, measured):
    seconds, peak, before = measured
    return (f"  {label:<50} {seconds:>8.2f} s   peak memory {peak:>6.0f} MB "
            f"(+{peak - before:.0f} MB over the {before:.0f} MB before)")


def report(read_model, launched, placed, shared, municipalities):
    print(f"\nregistry → campaign read model: {read_model['points']:,} support points "
          f"registered in batches of {reference.BATCH}")
    print(f"  registry writes        {read_model['registry_rate']:>8.1f} points/s "
          f"({read_model['registry_seconds']:.1f} s)")
    print(f"  campaign read model    {read_model['campaign_rate']:>8.1f} events/s end to end "
          f"({read_model['campaign_seconds']:.1f} s), "
          f"{read_model['campaign_rate'] / read_model['registry_rate']:.2f} × the registry's rate")
    print(f"  lag behind the registry: median {read_model['lag_median']:.2f} s, largest "
          f"{read_model['lag_max']:.2f} s, after the last write {read_model['lag_at_end']:.2f} s")

    print(f"\nlaunch of a national campaign to {POINTS:,} support points")
    print(_cost(f"direct RPC ({launched['direct_reached']:,} reached)", launched["direct"]))
    print(_cost(f"GraphQL gateway ({launched['gateway_reached']:,} reached)", launched["gateway"]))
    print(f"  gateway / direct: {launched['gateway'][0] / launched['direct'][0]:.2f} ×")

    print(f"\nallocation round: {placed['orders']:,} orders ({placed['waiting']:,} waiting, "
          f"{placed['asked']:,} bags asked) from all {municipalities} municipalities, placed in "
          f"{placed['seconds']:.1f} s; a print run of {PRINT_RUN:,} before each round")
    print(_cost(f"direct RPC ({shared['direct_orders']:,} orders, "
                f"{shared['direct_allocated']:,} bags)", shared["direct"]))
    print(_cost(f"GraphQL gateway ({shared['gateway_orders']:,} still waiting, "
                f"{shared['gateway_allocated'] or 0:,} bags)", shared["gateway"]))
    print(f"  gateway / direct: {shared['gateway'][0] / shared['direct'][0]:.2f} ×")
    stock = shared["stock"]
    print(f"  stock after: {stock}; printed = available + allocated + shipped: "
          f"{stock['printed'] == stock['available'] + stock['allocated'] + stock['shipped']}")
    ok = (read_model["points"] == POINTS and launched["direct_reached"] == POINTS
          and launched["gateway_reached"] == POINTS and not launched["gateway_errors"]
          and placed["waiting"] == ORDERS and shared["direct_orders"] == ORDERS
          and shared["gateway_orders"] == shared["still_waiting"] and not shared["gateway_errors"]
          and shared["direct_allocated"] == shared["gateway_allocated"] == PRINT_RUN)
    print(f"\n  every step complete and without errors: {'yes' if ok else 'NO'}")
    if not ok:
        problem("the campaign benchmark's steps did not all complete without errors")
    for label, errors in (("launch", launched["gateway_errors"]),
                          ("round", shared["gateway_errors"])):
        if errors:
            print(f"    {label} through the gateway: {str(errors)[:300]}")
    return ok
