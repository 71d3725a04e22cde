"""Travel claims: 10,000 claims of 1-5 trips submitted by 20 concurrent clients through the
gateway and the same as direct RPC calls, then createPayoutBatch over 10,000 and over 100,000
approved claims.

Printed (issue 11; no pass/fail targets): claims per second, median and p99 of each path and
the CPU each process spends per claim; the seconds of each payout batch and the travel_costs
process's peak memory during it, so that the growth from 10,000 to 100,000 is visible.

Everything goes through the public paths: caregivers request their declaration and the
municipality issues it (RPC, as the gateway would), claims are submitted and approved one by
one. The run sets TRAVEL_ANNUAL_CAP high: a few hundred caregivers carry 110,000 claims, and
the cap is not what is measured. Every trip is dated today (a declaration is valid from the
day it is issued); the trips of a caregiver differ by destination postcode and mode.

The 100,000 approved claims of the second batch are not filed one by one: on the embedded
store a claim costs the fund about 25 ms of CPU to file and as much again to approve, so
100,000 would take hours. They are copies of the claims the first batch paid, as the fund
stored them, set back to APPROVED (each IBAN sealed again for its copy's id), written into the
fund's store while the fund is stopped, as a restore of a backup would; the payout then reads
them through the running service like any others."""
import csv
import itertools
import os
import random
import threading
import time
from datetime import date
from pathlib import Path

from bench.harness import (CpuClock, GraphQLOverHttp, measure, print_table, rpc_load,
                           running_platform, wait_for_outbox,
                           wait_until_municipality_known)
from common.geo import haversine_km
from bson import ObjectId
from common import crypto
from common.storage import open_store
from gateway.auth import issue_development_token
from ops import reference
from ops.platform import process_named
from services.travel_costs import storage as fund_storage

REFERENCE_DATA = Path(__file__).resolve().parents[1] / "ops" / "reference_data"
SECRET = "bench-secret-of-thirty-two-bytes-or-more"
CLAIMS = int(os.environ.get("BENCH_TRAVEL_CLAIMS", "10000"))
LARGE_BATCH = int(os.environ.get("BENCH_TRAVEL_LARGE_BATCH", "100000"))
CONCURRENCY = 20
# 0: only the submissions (a second measurement of them without the payouts' half hour)
PAYOUTS = os.environ.get("BENCH_TRAVEL_PAYOUTS", "1") != "0"
CAREGIVERS = int(os.environ.get("BENCH_TRAVEL_CAREGIVERS", "400"))
MODES = ("CAR", "PUBLIC_TRANSPORT", "BICYCLE", "TAXI")
# Postcode letters; SA, SD and SS are not used in Dutch postcodes.
LETTERS = [f"{a}{b}" for a in "ABCDEFGHJKLMNPRSTVWXZ" for b in "ABCDEFGHJKLMNPRSTVWXZ"
           if f"{a}{b}" not in ("SA", "SD", "SS")]
ADMIN = {"sub": "bench-admin", "role": "admin", "municipality": None, "support_point": None}
FUND = {"sub": "bench-fund", "role": "fund", "municipality": None, "support_point": None}
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


class PeakMemory:
    """Resident memory of one process: now, and the highest since ``reset`` (the kernel's
    high-water mark, VmHWM, which writing 5 to clear_refs sets back to the current size)."""

    def __init__(self, pid):
        self.pid = pid

    def reset(self):
        try:
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")
            return True
        except OSError:
            return False

    def read(self):
        fields = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                fields[name] = int(value.split()[0]) / 1024
        return fields["VmRSS"], fields["VmHWM"]


def payout(platform, memory):
    before, _ = memory.read()
    reset = memory.reset()
    started = time.perf_counter()
    with platform.rpc(timeout=3600) as rpc:
        batch = rpc.travel_costs.create_payout_batch(FUND)
    seconds = time.perf_counter() - started
    _, peak = memory.read()
    with platform.rpc(timeout=600) as rpc:
        wait_for_outbox(rpc, "travel_costs", timeout=3600)
    published = time.perf_counter() - started - seconds
    return {"published_seconds": published, "id": batch["id"], "claims": batch["claim_count"], "total": batch["total_euros"],
            "seconds": seconds,
            "rss_before_mib": before, "peak_mib": peak, "peak_since_start": not reset}


def approve(platform, claim_ids):
    started = time.perf_counter()
    result = measure(rpc_approvals(platform.environ["AMQP_URI"], claim_ids), len(claim_ids),
                     CONCURRENCY)
    print(f"  {result['requests']:,} claims approved by RPC in {time.perf_counter() - started:.0f} s "
          f"({result['rps']:.0f}/s, {result['errors']} errors)")
    return result


def restore_approved_copies(platform, count):
    """``count`` approved, unpaid claims in the fund's store: copies of the claims paid so
    far, written while the fund is stopped (see the module's description)."""
    fund = process_named("travel_costs")
    platform.stop_process(fund)
    config = {"DATA_DIR": platform.environ["MANTELZORG_DATA_DIR"]}
    cipher = crypto.data_cipher(config, platform.environ)
    store = open_store(config, "mantelzorg_travel_costs", fund_storage.TravelCostsStore)
    try:
        paid = list(store.db[fund_storage.CLAIMS].find({"status": "PAID"}))
        batch = []
        for original in itertools.islice(itertools.cycle(paid), count):
            copy_id = str(ObjectId())
            account = cipher.decrypt(original["account"], context=original["_id"])
            history = [e for e in original["history"] if e.get("action") != "pay"]
            copy = {key: value for key, value in original.items()
                    if key not in ("batch_id", "paid_at")}
            batch.append({**copy, "_id": copy_id, "status": "APPROVED", "history": history,
                          "account": cipher.encrypt(account, context=copy_id)})
            if len(batch) == 5000:
                store.db[fund_storage.CLAIMS].insert_many(batch, ordered=False)
                batch = []
        if batch:
            store.db[fund_storage.CLAIMS].insert_many(batch, ordered=False)
    finally:
        store.close()
    platform.start_process(fund)
    platform.wait_until_healthy(names=["travel_costs"])


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
        memory = PeakMemory(platform.children["travel_costs"].pid)
        claims = Claims(people, seed=5)
        measure(gateway_submissions(platform.gateway_url(), claims), 200, CONCURRENCY)  # warm up
        measure(rpc_submissions(amqp_uri, claims), 200, CONCURRENCY)
        results = {
            "gateway": measure(gateway_submissions(platform.gateway_url(), claims), CLAIMS,
                               CONCURRENCY, cpu=cpu),
            "rpc": measure(rpc_submissions(amqp_uri, claims), CLAIMS, CONCURRENCY, cpu=cpu),
        }
        submitted = list(claims.ids)
        print_table(f"submitTravelClaim, 1-5 trips, {CONCURRENCY} concurrent clients back to "
                    f"back, {CLAIMS:,} claims a row",
                    [("through the gateway", results["gateway"]), ("direct RPC", results["rpc"])])

        with platform.rpc(timeout=600) as rpc:
            wait_for_outbox(rpc, "travel_costs")
        if not PAYOUTS:
            return all(r["errors"] == 0 for r in results.values())
        results["approve"] = approve(platform, submitted[:CLAIMS])
        print("\ncreatePayoutBatch (direct RPC; SEPA file written, validated, stored, claims "
              "paid), then the publication of the batch's PAID events")
        report_batch(payout(platform, memory))
        started = time.perf_counter()
        restore_approved_copies(platform, LARGE_BATCH)
        print(f"  ({LARGE_BATCH:,} approved copies restored into the fund's store in "
              f"{time.perf_counter() - started:.0f} s)")
        report_batch(payout(platform, PeakMemory(platform.children["travel_costs"].pid)))
    ok = all(r["errors"] == 0 for r in results.values())
    print(f"  no errors: {'yes' if ok else 'NO'}")
    return ok


def report_batch(batch):
    note = " (peak since the process started)" if batch["peak_since_start"] else ""
    print(f"  {batch['claims']:>7,} claims, {batch['total']:>13} EUR: {batch['seconds']:7.1f} s, "
          f"travel_costs resident memory {batch['rss_before_mib']:.0f} MiB before, "
          f"peak {batch['peak_mib']:.0f} MiB{note}; its events published "
          f"{batch['published_seconds']:.1f} s later")
