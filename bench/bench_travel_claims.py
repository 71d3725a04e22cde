"""Travel claims: 10,000 claims of 1-5 trips submitted by 20 concurrent clients through the
gateway and the same as direct RPC calls, then payouts (proposed by one fund member, released
by another) of 1,000 and of 10,000 approved claims, with their ratios.

Printed: claims per second, median and p99 of each path and the CPU each process spends per
claim; per payout the seconds of the proposal (claims read, SEPA file written, validated,
encrypted and stored) and of the release (claims marked paid, a chunk of 1,000 per
transaction), the first and the last chunk, the travel_costs process's memory rise during
each, and how long its PAID events took to be published; then the larger payout against the
smaller one, with the targets of issue 26 (at most 11 times the time for 10 times the claims,
at most 3 times the memory rise, the last chunk at most 1.2 times the first).

Everything goes through the paths an operator and the fund's staff use: caregivers request
their declaration and the municipality issues it, claims are submitted and approved one by
one by RPC, as the gateway calls the services; nothing is written into a service's database.
The run sets TRAVEL_ANNUAL_CAP high: a few hundred caregivers carry the claims, and the cap
is not what is measured. Every trip is dated today (a declaration is valid from the day it is
issued); the trips of a caregiver differ by destination postcode and mode.

BENCH_TRAVEL_PAYOUTS lists the payout sizes (default "1000,10000"; "1000,10000,100000" asks
for 100,000 too, which files and approves 111,000 claims first: hours on the embedded store);
0 measures the submissions alone."""
import csv
import json
import os
import random
import threading
import time
from datetime import date
from pathlib import Path

from bench.harness import (CpuClock, GraphQLOverHttp, PeakMemory, measure, print_table,
                           rpc_load, running_platform, verdict, wait_for_outbox,
                           wait_until_municipality_known)
from common.geo import haversine_km
from gateway.auth import issue_development_token
from ops import reference

REFERENCE_DATA = Path(__file__).resolve().parents[1] / "ops" / "reference_data"
SECRET = "bench-secret-of-thirty-two-bytes-or-more"
CLAIMS = int(os.environ.get("BENCH_TRAVEL_CLAIMS", "10000"))
CONCURRENCY = 20
# The payout sizes, smallest first; "0": only the submissions.
PAYOUTS = [int(n) for n in os.environ.get("BENCH_TRAVEL_PAYOUTS", "1000,10000").split(",")
           if int(n)]
CAREGIVERS = int(os.environ.get("BENCH_TRAVEL_CAREGIVERS", "400"))
MODES = ("CAR", "PUBLIC_TRANSPORT", "BICYCLE", "TAXI")
# Postcode letters; SA, SD and SS are not used in Dutch postcodes.
LETTERS = [f"{a}{b}" for a in "ABCDEFGHJKLMNPRSTVWXZ" for b in "ABCDEFGHJKLMNPRSTVWXZ"
           if f"{a}{b}" not in ("SA", "SD", "SS")]
ADMIN = {"sub": "bench-admin", "role": "admin", "municipality": None, "support_point": None}
FUND = {"sub": "bench-fund", "role": "fund", "municipality": None, "support_point": None}
# Four eyes: the second fund member releases what the first proposed.
RELEASER = {"sub": "bench-fund-second", "role": "fund", "municipality": None,
            "support_point": None}
SUBMIT = """mutation($input: TravelClaimInput!) { submitTravelClaim(input: $input) {
  id status amountEuros trips { amountEuros } } }"""


class Caregiver:
    """A caregiver with an issued declaration, a home and a care address 15-80 km apart, and
    the trips claimed so far (each trip of a caregiver is claimed once)."""

    def __init__(self, number, home, care):
        self.bsn = _bsn(number)
        self.actor = {"sub": f"bench-caregiver-{number}", "role": "caregiver",
                      "municipality": None, "support_point": None, "bsn": self.bsn}
        self.token = issue_development_token(SECRET, "caregiver", self.actor["sub"], bsn=self.bsn)
        self.home, self.care = home, care
        km = haversine_km((float(home["latitude"]), float(home["longitude"])),
                          (float(care["latitude"]), float(care["longitude"])))
        self.distance = f"{km * 1.25 + 2:.1f}"      # a road a quarter longer: plausible
        self.reference = None
        self.trips = 0
        self.lock = threading.Lock()

    def request_and_issue(self, rpc):
        answer = rpc.declaration.request_declaration({
            "municipalityCode": "GM0363",
            "caregiver": {"bsn": self.bsn, "name": "Bench Mantelzorger",
                          "postcode": f"{self.home['pc4']} AB"},
            "careRecipient": {"name": f"Naaste {self.bsn}", "postcode": f"{self.care['pc4']} AB",
                              "relationship": "parent"},
            "hoursPerWeek": "12", "careSince": "2020-01-01", "purposes": ["TRAVEL_COST_FUND"]},
            self.actor)
        rpc.declaration.decide_declaration(answer["id"], "ISSUE", None, ADMIN)
        self.reference = answer["reference"]

    def claim_input(self, trip_count):
        with self.lock:
            first, self.trips = self.trips, self.trips + trip_count
        trips = []
        for number in range(first, first + trip_count):
            mode = MODES[number % len(MODES)]
            trip = {"date": date.today().isoformat(), "fromPostcode": f"{self.home['pc4']} AB",
                    "toPostcode": f"{self.care['pc4']} {LETTERS[number // len(MODES)]}",
                    "distanceKm": self.distance, "returnTrip": number % 3 != 0, "mode": mode}
            if mode in ("PUBLIC_TRANSPORT", "TAXI"):
                trip["costEuros"] = "14.60"
            trips.append(trip)
        return {"declarationReference": self.reference, "iban": "NL91ABNA0417164300",
                "accountHolder": "Bench Mantelzorger", "trips": trips}


def _bsn(number):
    """A BSN that passes the 11-proef, different for every number below ten million."""
    for first in range(1, 10):
        digits = [first, *map(int, f"{number:07d}")]
        last = sum(d * w for d, w in zip(digits, range(9, 1, -1))) % 11
        if last < 10:
            return "".join(map(str, digits)) + str(last)
    raise ValueError(number)


def caregivers(rows, count, rng):
    found = []
    while len(found) < count:
        home, care = rng.choice(rows), rng.choice(rows)
        km = haversine_km((float(home["latitude"]), float(home["longitude"])),
                          (float(care["latitude"]), float(care["longitude"])))
        if 15 <= km <= 80:
            found.append(Caregiver(len(found), home, care))
    return found


class Claims:
    """Which caregiver makes claim ``i`` and its input; the ids of the claims made."""

    def __init__(self, people, seed):
        self.people = people
        self.rng = random.Random(seed)
        self.ids = []
        self.lock = threading.Lock()

    def next(self, index):
        person = self.people[index % len(self.people)]
        with self.lock:
            trips = self.rng.randint(1, 5)
        return person, person.claim_input(trips)

    def made(self, claim):
        if claim.get("status") not in ("SUBMITTED", "ON_HOLD"):
            raise AssertionError(str(claim)[:200])
        with self.lock:
            self.ids.append(claim["id"])


def gateway_submissions(url, claims):
    """Per client a keep-alive connection; each claim with its caregiver's token."""
    def make():
        client = GraphQLOverHttp(url)

        def call(index):
            person, data = claims.next(index)
            client.headers["Authorization"] = f"Bearer {person.token}"
            answer = client.query(SUBMIT, {"input": data})
            if "errors" in answer:
                raise AssertionError(str(answer["errors"])[:200])
            claims.made(answer["data"]["submitTravelClaim"])
        return call, client.close
    return make


def rpc_submissions(amqp_uri, claims):
    def submit(proxy, index):
        person, data = claims.next(index)
        claims.made(proxy.travel_costs.submit_travel_claim(data, person.actor))
    return rpc_load(amqp_uri, submit)


def rpc_approvals(amqp_uri, claim_ids):
    def approve(proxy, index):
        claim = proxy.travel_costs.review_travel_claim(claim_ids[index], True, "bench review", FUND)
        if claim["status"] != "APPROVED":
            raise AssertionError(claim["status"])
    return rpc_load(amqp_uri, approve)


def payout(platform, size):
    """Proposes a batch of every approved claim and releases it; its figures."""
    memory = PeakMemory(platform, "travel_costs")
    figures = {}
    with platform.rpc(timeout=3600) as rpc:
        for step, call in (("propose", lambda: rpc.travel_costs.create_payout_batch(FUND)),
                           ("release", lambda: rpc.travel_costs.release_payout_batch(
                               figures["id"], RELEASER))):
            memory.start()
            started = time.perf_counter()
            batch = call()
            figures[f"{step}_seconds"] = time.perf_counter() - started
            figures[f"{step}_rise_mib"] = memory.peak_mb() - memory.before_mb
            figures["id"] = batch["id"]
        started = time.perf_counter()
        wait_for_outbox(rpc, "travel_costs", timeout=3600)
    if batch["claim_count"] != size:
        raise AssertionError(f"{batch['claim_count']} claims paid, {size} approved")
    chunks = _chunk_times(platform, batch["id"])
    return {**figures, **chunks, "claims": batch["claim_count"], "total": batch["total_euros"],
            "seconds": figures["propose_seconds"] + figures["release_seconds"],
            "rise_mib": max(figures["propose_rise_mib"], figures["release_rise_mib"]),
            "published_seconds": time.perf_counter() - started}


CHUNK_FIGURES = ("first_chunk_ms", "last_chunk_ms", "slowest_chunk_ms", "all_chunks_ms")


def _chunk_times(platform, batch_id):
    """The first, last and slowest chunk of a release and all its chunks together, as the
    fund logs them."""
    for line in reversed(platform.log_file("travel_costs").read_text().splitlines()):
        if batch_id in line and "payout_chunks_paid" in line:
            entry = json.loads(line)
            return {name: entry[name] for name in CHUNK_FIGURES}
    return {name: float("nan") for name in CHUNK_FIGURES}


def approve(platform, claim_ids):
    started = time.perf_counter()
    result = measure(rpc_approvals(platform.environ["AMQP_URI"], claim_ids), len(claim_ids),
                     CONCURRENCY)
    print(f"  {result['requests']:,} claims approved by RPC in {time.perf_counter() - started:.0f} s "
          f"({result['rps']:.0f}/s, {result['errors']} errors)")
    return result


def run():
    rows = list(csv.DictReader(open(REFERENCE_DATA / "pc4.csv", encoding="utf-8")))
    people = caregivers(rows, CAREGIVERS, random.Random(11))
    with running_platform(MANTELZORG_JWT_SECRET=SECRET, TRAVEL_ANNUAL_CAP="100000000",
                          GATEWAY_MAX_WORKERS="40", TRAVEL_COSTS_MAX_WORKERS="40",
                          DECLARATION_MAX_WORKERS="40") as platform:
        started = time.perf_counter()
        with platform.rpc(timeout=600) as rpc:
            reference.import_reference(rpc, REFERENCE_DATA)
            while rpc.travel_costs.health()["pc4_areas"] < len(rows):
                time.sleep(0.5)
            wait_until_municipality_known(rpc, "GM0363")
            for person in people:
                person.request_and_issue(rpc)
        print(f"  reference data and {len(people)} caregivers with an issued declaration in "
              f"{time.perf_counter() - started:.0f} s")

        amqp_uri = platform.environ["AMQP_URI"]
        cpu = CpuClock(platform, "gateway", "travel_costs", "declaration")
        claims = Claims(people, seed=5)
        measure(gateway_submissions(platform.gateway_url(), claims), 200, CONCURRENCY)  # warm up
        measure(rpc_submissions(amqp_uri, claims), 200, CONCURRENCY)
        results = {
            "gateway": measure(gateway_submissions(platform.gateway_url(), claims), CLAIMS,
                               CONCURRENCY, cpu=cpu),
            "rpc": measure(rpc_submissions(amqp_uri, claims), CLAIMS, CONCURRENCY, cpu=cpu),
        }
        print_table(f"submitTravelClaim, 1-5 trips, {CONCURRENCY} concurrent clients back to "
                    f"back, {CLAIMS:,} claims a row",
                    [("through the gateway", results["gateway"]), ("direct RPC", results["rpc"])])

        with platform.rpc(timeout=600) as rpc:
            wait_for_outbox(rpc, "travel_costs")
        if not PAYOUTS:
            return all(r["errors"] == 0 for r in results.values())
        missing = sum(PAYOUTS) - len(claims.ids)
        if missing > 0:
            started = time.perf_counter()
            results["more"] = measure(rpc_submissions(amqp_uri, claims), missing, CONCURRENCY)
            print(f"  {missing:,} more claims submitted by RPC for the payouts in "
                  f"{time.perf_counter() - started:.0f} s")
        print("\nPayouts (direct RPC, as the gateway calls them): proposed by one fund member "
              "(SEPA file written, validated, encrypted, stored), released by another (claims "
              "paid, a chunk of 1,000 per transaction), then their PAID events published")
        submitted, batches = list(claims.ids), []
        for size in PAYOUTS:
            results[f"approve {size}"] = approve(platform, submitted[:size])
            submitted = submitted[size:]
            batches.append(payout(platform, size))
            report_batch(batches[-1])
        targets_met = compare_batches(batches)
    ok = all(r["errors"] == 0 for r in results.values())
    print(f"  no errors: {'yes' if ok else 'NO'}")
    return ok and targets_met


def report_batch(batch):
    print(f"  {batch['claims']:>7,} claims, {batch['total']:>13} EUR: proposed in "
          f"{batch['propose_seconds']:6.1f} s (memory +{batch['propose_rise_mib']:.0f} MiB), "
          f"released in {batch['release_seconds']:6.1f} s (memory +{batch['release_rise_mib']:.0f} "
          f"MiB; first chunk {batch['first_chunk_ms']:.0f} ms, last {batch['last_chunk_ms']:.0f} "
          f"ms, slowest {batch['slowest_chunk_ms']:.0f} ms, all {batch['all_chunks_ms'] / 1000:.1f} "
          f"s); events published {batch['published_seconds']:.1f} s later")


def compare_batches(batches):
    """Each payout against the one before it: the time, the memory rise, the chunks."""
    ok = True
    for small, large in zip(batches, batches[1:]):
        times = large["claims"] / small["claims"]
        ratio = large["seconds"] / small["seconds"]
        rise = large["rise_mib"] / max(small["rise_mib"], 1.0)
        chunks = large["last_chunk_ms"] / large["first_chunk_ms"]
        print(f"  {large['claims']:,} against {small['claims']:,} claims ({times:.0f} times): "
              f"{ratio:.2f} times the seconds (propose {large['propose_seconds'] / small['propose_seconds']:.2f}, "
              f"release {large['release_seconds'] / small['release_seconds']:.2f}), "
              f"{rise:.2f} times the memory rise; last chunk {chunks:.2f} times the first")
        ok &= verdict(f"at most {1.1 * times:.0f} times the seconds", ratio <= 1.1 * times)
        ok &= verdict("at most 3 times the memory rise", rise <= 3)
        ok &= verdict("the last chunk at most 1.2 times the first", chunks <= 1.2)
    return ok
