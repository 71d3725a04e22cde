"""A state change must not cost more as the store fills.

A state change of a declaration (its status step with the audit entry, as a decision makes
it: ``DeclarationStore.change_if_status`` in a transaction) on the embedded store, on disk
with every commit synced as a service keeps it, with BENCH_GROWTH_SIZES declarations stored
(default 1,000 and 20,000; the issue's target compares 1,000 with 100,000:
BENCH_GROWTH_SIZES=1000,100000). The declarations are written through the store's own
``insert`` into a store of this benchmark's own, not into a running service. Target: the
larger costs at most 2 times the smaller. Filing declarations as the store fills is measured
by bench_declaration_check.

Then the writes of travel claims as they come: BENCH_GROWTH_CLAIMS claims (default 8,000)
written by 20 threads into a fund store of this benchmark's own, each as the fund writes a
submitted claim (its grant counter, trip keys, the fund's copy of the declaration, the claim
and its two outbox entries in one transaction; the entries then claimed and removed as the
relay does), through the store's named methods. Printed: the claims a second per window of
1,000 as each window ends, and the last window against the first: what the embedded store
does under a stream of writes, without the services or the broker around it. The store lets
EMBEDDED_TRANSACTIONS_AT_ONCE of the writers' transactions run at once, as in a service
(with all 20 at once the rate fell from 90 to 9 a second after the first thousand)."""
import random
import statistics
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone

from bench.harness import problem, size, verdict
from common import config as settings
from common.storage import OutboxStore
from services.declaration.storage import DeclarationStore
from services.travel_costs.storage import TravelCostsStore

GROWTH_SIZES = tuple(int(n) for n in settings.setting(None, "BENCH_GROWTH_SIZES",
                                                      "1000,20000").split(","))
CHANGES = size("GROWTH_CHANGES", 300)     # state changes timed at each size
INSERT_BATCH = 1000                       # declarations a transaction while filling
START = datetime(2026, 1, 5, 9, tzinfo=timezone.utc)
CLAIMS = size("GROWTH_CLAIMS", 8000)   # claims written as they come
CLAIM_WINDOW = min(1000, max(CLAIMS // 4, 1))
WRITERS = 20


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


def _write_claim(store, outbox, number):
    """One claim as the fund writes it (services/travel_costs/service.py), with made-up
    values of the same sizes."""
    caregiver_key = f"caregiver-{number % 400}"
    claim_id = f"{number:024x}"
    now = START + timedelta(seconds=number)
    entries = [{"_id": f"{claim_id}-{kind}", "created_at": now, "claimed_until": now,
                "envelope": {"type": f"travel_claim.{kind}", "payload": "p" * 700}}
               for kind in ("submitted", "held")]
    store.ensure_grant_counters(caregiver_key, [2026])

    def work(session):
        granted = store.granted(caregiver_key, [2026], session).get(2026, 0)
        if not store.add_grant(caregiver_key, 2026, 1250, granted, session):
            raise RuntimeError("a counter changed meanwhile")   # one writer per caregiver
        store.record_trips([f"{claim_id}-trip-{trip}" for trip in range(3)], claim_id, session)
        store.touch_declaration(f"MZ-2026-{number % 400:07d}", now, session)
        store.insert_claim({"_id": claim_id, "caregiver_key": caregiver_key,
                            "status": "SUBMITTED", "submitted_at": now, "amount_cents": 1250,
                            "trips": [{"km": "42.0", "cents": 1250}] * 3,
                            "bank": {"kid": "k1", "nonce": "n" * 16, "ciphertext": "c" * 2400}},
                           session)
        outbox.add_entries(entries, session)

    store.in_transaction(work)
    ids = [entry["_id"] for entry in entries]
    outbox.claim_entries(ids, lambda entry: True, now, "bench-relay")
    outbox.remove_entries(ids)


def claims_as_they_come():
    """Claims a second per window of CLAIM_WINDOW written claims."""
    numbers = iter(range(CLAIMS))
    lock = threading.Lock()
    finished = []
    with tempfile.TemporaryDirectory() as folder:
        store = TravelCostsStore("bench_store_growth_fund", "", folder)
        store.ensure_indexes()
        outbox = OutboxStore(store)
        outbox.ensure_indexes()

        def writer():
            while True:
                with lock:
                    number = next(numbers, None)
                if number is None:
                    return
                try:
                    _write_claim(store, outbox, number)
                except Exception as error:  # noqa: BLE001 - reported, the run fails
                    problem(f"claim {number}: {error!r}"[:200])
                with lock:
                    finished.append(time.perf_counter())

        print(f"\ntravel claims written as they come ({WRITERS} threads, a claim's transaction, "
              f"its outbox entries claimed and removed), claims a second per {CLAIM_WINDOW:,}")
        window_start = time.perf_counter()
        threads = [threading.Thread(target=writer) for _ in range(WRITERS)]
        for thread in threads:
            thread.start()
        rates = []
        # each window printed as it ends: a run stopped early still shows where it slowed
        while any(thread.is_alive() for thread in threads) or \
                len(finished) >= (len(rates) + 1) * CLAIM_WINDOW:
            window_end = (len(rates) + 1) * CLAIM_WINDOW
            if len(finished) >= window_end:
                rates.append(CLAIM_WINDOW / (finished[window_end - 1] - window_start))
                window_start = finished[window_end - 1]
                print(f"  up to {window_end:>7,} written: {rates[-1]:6.1f} a second", flush=True)
            else:
                time.sleep(0.2)
        store.close()
    return rates


def run():
    rates = claims_as_they_come()
    ok = bool(rates)
    if rates:
        window_ratio = rates[-1] / rates[0]
        print(f"  last window against the first: {window_ratio:.2f} (target at least 0.8)")
        ok = verdict("the last window of claims at least 0.8 x the rate of the first",
                     window_ratio >= 0.8)
    costs = state_change_costs()
    small, large = GROWTH_SIZES[0], GROWTH_SIZES[-1]
    print(f"\nstate change of a declaration (change_if_status in a transaction), median of "
          f"{CHANGES}")
    for stored_size, ms in costs.items():
        print(f"  {stored_size:>9,} stored: {ms:.2f} ms")
    ratio = costs[large] / costs[small]
    print(f"  ratio {large:,} / {small:,}: {ratio:.2f} (target at most 2)")
    ok &= verdict(f"a state change at {large:,} stored costs at most 2 x at {small:,}",
                  ratio <= 2)

    return ok
