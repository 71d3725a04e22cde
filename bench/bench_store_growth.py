"""A state change must not cost more as the store fills.

A state change of a declaration (its status step with the audit entry, as a decision makes
it: ``DeclarationStore.change_if_status`` in a transaction) on the embedded store, on disk
with every commit synced as a service keeps it, with BENCH_GROWTH_SIZES declarations stored
(default 1,000 and 20,000; the issue's target compares 1,000 with 100,000:
BENCH_GROWTH_SIZES=1000,100000). The declarations are written through the store's own
``insert`` into a store of this benchmark's own, not into a running service. Target: the
larger costs at most 2 times the smaller. Filing declarations as the store fills is measured
by bench_declaration_check."""
import random
import statistics
import tempfile
import time
from datetime import datetime, timedelta, timezone

from bench.harness import problem, size, verdict
from common import config as settings
from services.declaration.storage import DeclarationStore

GROWTH_SIZES = tuple(int(n) for n in settings.setting(None, "BENCH_GROWTH_SIZES",
                                                      "1000,20000").split(","))
CHANGES = size("GROWTH_CHANGES", 300)     # state changes timed at each size
INSERT_BATCH = 1000                       # declarations a transaction while filling
START = datetime(2026, 1, 5, 9, tzinfo=timezone.utc)


def _declaration(number):
    return {"_id": f"bench-{number:07d}", "reference": f"MZ-2026-{number:07d}",
            "status": "REQUESTED", "municipality_code": "GM0363",
            "caregiver_key": f"caregiver-{number % 5000}", "active_key": f"active-{number}",
            "created_at": START + timedelta(seconds=number), "valid_until": "2027-01-05",
            "verification_hash": f"hash-{number}", "purposes": ["PARKING_PERMIT"],
            "personal": {"kid": "k1", "nonce": "n" * 16, "ciphertext": "c" * 200},
            "history": [{"action": "request", "at": START, "by": "bench"}]}


def _fill(store, stored, count):
    end = stored + count
    for first in range(stored, end, INSERT_BATCH):
        numbers = range(first, min(first + INSERT_BATCH, end))

        def write(session, numbers=numbers):
            for number in numbers:
                store.insert(_declaration(number), session)
        store.in_transaction(write)
    return end


def state_change_costs():
    """Median milliseconds of one state change at each size."""
    costs = {}
    rng = random.Random(26)
    with tempfile.TemporaryDirectory() as folder:
        # On disk with every commit synced, as a service keeps its store.
        store = DeclarationStore("bench_store_growth", "", folder)
        store.ensure_indexes()
        try:
            stored, changed_numbers = 0, set()
            for stored_size in GROWTH_SIZES:
                started = time.perf_counter()
                stored = _fill(store, stored, stored_size - stored)
                print(f"  {stored:,} declarations stored in "
                      f"{time.perf_counter() - started:.0f} s")
                still_requested = [n for n in range(stored) if n not in changed_numbers]
                timings = []
                # the first few of each size warm the store's caches up and are not counted
                warm_up = 30
                picked = rng.sample(still_requested, min(CHANGES + warm_up, len(still_requested)))
                for position, number in enumerate(picked):
                    changed_numbers.add(number)
                    declaration_id = f"bench-{number:07d}"
                    started = time.perf_counter()
                    changed = store.in_transaction(lambda session, i=declaration_id:
                                                   store.change_if_status(
                                                       i, "REQUESTED", {"status": "ISSUED"},
                                                       {"action": "issue", "at": START,
                                                        "by": "bench"}, session=session))
                    if position >= warm_up or len(picked) <= warm_up:
                        timings.append((time.perf_counter() - started) * 1000)
                    if changed is None or changed["status"] != "ISSUED":
                        problem(f"the state change of {declaration_id} did not happen")
                costs[stored_size] = statistics.median(timings)
        finally:
            store.close()
    return costs


def run():
    costs = state_change_costs()
    small, large = GROWTH_SIZES[0], GROWTH_SIZES[-1]
    print(f"\nstate change of a declaration (change_if_status in a transaction), median of "
          f"{CHANGES}")
    for stored_size, ms in costs.items():
        print(f"  {stored_size:>9,} stored: {ms:.2f} ms")
    ratio = costs[large] / costs[small]
    print(f"  ratio {large:,} / {small:,}: {ratio:.2f} (target at most 2)")
    ok = verdict(f"a state change at {large:,} stored costs at most 2 x at {small:,}",
                 ratio <= 2)

    return ok
