"""The travel-cost fund end to end: caregivers claim through the gateway on their issued
declaration, the fund reviews, one fund member proposes a payout batch and another releases
it (four eyes), paid by SEPA file, on the real broker with the embedded store."""
import csv
import json
import threading
import time
import uuid
from datetime import date, timedelta
from decimal import Decimal
from importlib.resources import files
from pathlib import Path
from xml.etree import ElementTree

import pytest
import requests
import xmlschema
from kombu import Connection, Exchange, Queue

from common.events import Subscription
from ops import cli
from tests.support import error_codes, eventually, log_lines, operator_of, scrape, token
from tests.support import (ACCOUNT_HOLDER, CLAIM_FIELDS, CLAIM_STAFF as STAFF, IBAN, MY_CLAIMS as MINE,
                           PREVIEW_CLAIM as PREVIEW, SUBMIT_CLAIM as SUBMIT, TODAY, Caregiver,
                           trip)

PC4_FILE = Path(__file__).resolve().parents[2] / "ops" / "reference_data" / "pc4.csv"
UNKNOWN_PC4 = next(str(n) for n in range(1000, 10000)
                   if str(n) not in {row["pc4"] for row in csv.DictReader(open(PC4_FILE, encoding="utf-8"))})
REVIEW = f"""mutation($id: ID!, $approve: Boolean!, $reason: String) {{
  reviewTravelClaim(id: $id, approve: $approve, reason: $reason) {{ {CLAIM_FIELDS} }} }}"""
CLAIM = f"""query($id: ID!) {{ travelClaim(id: $id) {{ {CLAIM_FIELDS} }} }}"""
LIST = """query($status: ClaimStatus, $first: Int, $after: String) {
  travelClaims(status: $status, first: $first, after: $after) { id status } }"""
BATCH_FIELDS = "id claimCount totalEuros createdAt sepaXmlUrl status releasedAt"
BATCH = f"""mutation {{ createPayoutBatch {{ {BATCH_FIELDS} }} }}"""
RELEASE = f"""mutation($id: ID!) {{ releasePayoutBatch(id: $id) {{ {BATCH_FIELDS} }} }}"""
BATCHES = f"""query($first: Int, $after: String) {{ payoutBatches(first: $first, after: $after) {{
  {BATCH_FIELDS} }} }}"""
STATEMENT = """query($year: Int!) { travelStatement(year: $year) {
  year claimCount paidEuros pdfUrl } }"""
REVOKE = """mutation($id: ID!) { revokeDeclaration(id: $id, reason: "no longer caring") { status } }"""
FUND, ADMIN = token("fund", "fund-staff"), token("admin", "admin")
# Other fund members: a batch is released by another person than the one who proposed it.
SECOND, THIRD = token("fund", "fund-second"), token("fund", "fund-third")


@pytest.fixture(scope="module")
def fund_ready(pc4_areas, known, reference_data):
    """The registry has imported the PC4 areas and the fund has its copy of the centroids
    from the registry's events; the declaration service knows Amsterdam."""
    return reference_data


def review(gql, claim, approve=True, reason=None, who=FUND):
    answer = gql(REVIEW, {"id": claim["id"], "approve": approve, "reason": reason}, token=who)
    assert "errors" not in answer, answer
    return answer["data"]["reviewTravelClaim"]


def only_error(answer):
    assert answer.get("data") in (None, {}) or not any((answer.get("data") or {}).values()), answer
    [error] = answer["errors"]
    return error["extensions"]


def test_a_claim_is_paid_per_km_at_the_rate_of_its_date(gql, fund_ready):
    caregiver = Caregiver(gql)
    claim = caregiver.submitted(trip(), trip(mode="PUBLIC_TRANSPORT", costEuros="12.40",
                                             toPostcode="3511 AB", returnTrip=False),
                                trip(distanceKm="8", toPostcode="1013 AA", mode="BICYCLE"))
    assert claim["status"] == "SUBMITTED"
    assert [t["amountEuros"] for t in claim["trips"]] == ["18.63", "12.40", "0.00"]
    assert claim["amountEuros"] == "31.03"
    assert claim["ibanMasked"] == "NL** **** **** **43 00"
    assert "trip 3: 10 km one way or less is not paid" in claim["reason"]
    assert claim["declarationReference"] == caregiver.reference
    assert [(h["toStatus"], h["actorRole"]) for h in claim["history"]] == [("SUBMITTED", "caregiver")]
    assert [c["id"] for c in caregiver.mine()] == [claim["id"]]
    assert gql(CLAIM, {"id": claim["id"]}, token=caregiver.token)["data"]["travelClaim"] == claim
    assert gql(CLAIM, {"id": claim["id"]}, token=FUND)["data"]["travelClaim"] == claim


def test_a_preview_answers_what_the_submission_then_stores_and_stores_nothing(gql, fund_ready):
    caregiver = Caregiver(gql)
    trips = (trip(), trip(mode="PUBLIC_TRANSPORT", costEuros="12.40", toPostcode="3511 AB",
                          returnTrip=False),
             trip(distanceKm="8", toPostcode="1013 AA", mode="BICYCLE"))
    preview = caregiver.previewed(*trips)
    assert preview["amountEuros"] == "31.03"
    assert [t["amountEuros"] for t in preview["trips"]] == ["18.63", "12.40", "0.00"]
    assert "trip 3: 10 km one way or less is not paid" in preview["reason"]
    assert caregiver.mine() == []
    assert caregiver.previewed(*trips) == preview   # nothing counted towards the annual cap

    claim = caregiver.submitted(*trips)   # the previewed trips are no duplicates
    assert claim["status"] == "SUBMITTED"
    assert {key: claim[key] for key in preview} == preview
    assert [c["id"] for c in caregiver.mine()] == [claim["id"]]
    # Now they are claimed: the preview refuses them as the submission would.
    assert only_error(caregiver.claim(*trips, operation=PREVIEW)) == {
        "code": "CONFLICT", "field": "input.trips.0"}


def test_a_preview_refuses_and_holds_as_the_submission_does(gql, fund_ready):
    caregiver = Caregiver(gql)
    assert only_error(caregiver.claim(trip(distanceKm="6"), operation=PREVIEW)) == {
        "code": "BAD_USER_INPUT", "field": "input.trips"}
    assert only_error(caregiver.claim(reference=Caregiver(gql).reference, operation=PREVIEW)) == {
        "code": "FORBIDDEN", "field": "input.declarationReference"}
    held = caregiver.previewed(trip(distanceKm="150"))
    assert held["amountEuros"] == "69.00"
    assert held["reason"].startswith("implausible distance: trip 1: 150 km stated")
    caregiver.submitted(*_cap_trips(15))   # 1,500.00 of this year's cap used
    capped = caregiver.claim(trip(), operation=PREVIEW)
    assert only_error(capped) == {"code": "BAD_USER_INPUT", "field": "input.trips"}
    assert len(caregiver.mine()) == 1
    anyone_else = gql(PREVIEW, {"input": {"declarationReference": caregiver.reference,
                                          "iban": IBAN, "accountHolder": ACCOUNT_HOLDER,
                                          "trips": [trip()]}}, token=FUND)
    assert only_error(anyone_else)["code"] == "FORBIDDEN"


@pytest.mark.parametrize("changes, field", [
    ({"iban": "NL91ABNA0417164301"}, "input.iban"),
    ({"trips": [trip(date=(TODAY + timedelta(days=1)).isoformat())]}, "input.trips.0.date"),
    ({"trips": [trip(distanceKm="-12")]}, "input.trips.0.distanceKm"),
    ({"trips": [trip(mode="PUBLIC_TRANSPORT")]}, "input.trips.0.costEuros"),
    ({"trips": [trip(mode="CAR", costEuros="20")]}, "input.trips.0.costEuros"),
    ({"trips": [trip(), trip(toPostcode="1011 AA", fromPostcode=f"{UNKNOWN_PC4} XX")]}, "input.trips.1.fromPostcode"),
    ({"trips": [trip(date=(TODAY - timedelta(days=1)).isoformat())]}, "input.trips.0.date"),
    ({"trips": [trip(distanceKm="6")]}, "input.trips"),
    # a name a bank transfer cannot carry once stopped every payout (issue 22)
    ({"accountHolder": "A. de Vries\u0001"}, "input.accountHolder"),
    ({"accountHolder": "Jansen & Zn"}, "input.accountHolder"),
])
def test_bad_input_is_refused_naming_the_field_and_stores_nothing(gql, fund_ready, changes, field):
    caregiver = Caregiver(gql)
    data = {"declarationReference": caregiver.reference, "iban": IBAN, "accountHolder": ACCOUNT_HOLDER,
            "trips": [trip()], **changes}
    answer = gql(SUBMIT, {"input": data}, token=caregiver.token)
    extensions = only_error(answer)
    assert extensions == {"code": "BAD_USER_INPUT", "field": field}, answer
    said = json.dumps(answer)
    assert "NL91ABNA0417164301" not in said and "de Vries" not in said and "Jansen" not in said
    assert caregiver.mine() == []


def test_only_ones_own_issued_travel_declaration_carries_a_claim(gql, fund_ready):
    caregiver, other = Caregiver(gql), Caregiver(gql)
    theirs = only_error(caregiver.claim(reference=other.reference))
    unknown = only_error(caregiver.claim(reference="MZV-1999-999999"))
    assert theirs == unknown == {"code": "FORBIDDEN", "field": "input.declarationReference"}
    parking = Caregiver(gql, purposes=("PARKING_PERMIT",))
    assert only_error(parking.claim()) == {"code": "BAD_USER_INPUT",
                                           "field": "input.declarationReference"}
    assert gql(REVOKE, {"id": other.declaration["id"]}, token=STAFF)["data"]["revokeDeclaration"]
    assert only_error(other.claim())["field"] == "input.declarationReference"
    assert caregiver.mine() == other.mine() == parking.mine() == []


def test_the_same_trip_twice_is_a_conflict_naming_it(gql, fund_ready):
    caregiver = Caregiver(gql)
    twice = caregiver.claim(trip(), trip(mode="TAXI", costEuros="30"), trip())
    assert only_error(twice) == {"code": "CONFLICT", "field": "input.trips.2"}
    caregiver.submitted(trip())
    again = caregiver.claim(trip(toPostcode="3511 AB"), trip(toPostcode="3511 aa"))
    assert only_error(again) == {"code": "CONFLICT", "field": "input.trips.1"}
    assert "already claimed" in again["errors"][0]["message"]
    assert len(caregiver.mine()) == 1
    # Another caregiver may make the same trip.
    Caregiver(gql).submitted(trip())


def test_an_implausible_distance_puts_the_claim_on_hold_for_staff(gql, fund_ready):
    claim = Caregiver(gql).submitted(trip(distanceKm="150"))
    assert claim["status"] == "ON_HOLD" and claim["amountEuros"] == "69.00"
    assert claim["reason"].startswith("implausible distance: trip 1: 150 km stated")
    assert [(h["toStatus"], h["actorRole"]) for h in claim["history"]] == [
        ("SUBMITTED", "caregiver"), ("ON_HOLD", "system")]
    answer = gql(REVIEW, {"id": claim["id"], "approve": True}, token=FUND)
    assert only_error(answer) == {"code": "BAD_USER_INPUT", "field": "reason"}
    approved = review(gql, claim, reason="route via the ring road checked")
    assert approved["status"] == "APPROVED" and approved["reason"] == "route via the ring road checked"


def _cap_trips(count, cost="120.00"):
    return [trip(mode="PUBLIC_TRANSPORT", costEuros=cost, returnTrip=False,
                 toPostcode=f"3511 {chr(65 + n // 26)}{chr(65 + n % 26)}") for n in range(count)]


def test_the_annual_cap_pays_up_to_1500_and_a_rejection_frees_it(gql, fund_ready):
    caregiver = Caregiver(gql)
    first = caregiver.submitted(*_cap_trips(16))
    assert all(t["amountEuros"] == "100.00" for t in first["trips"])
    assert first["amountEuros"] == "1500.00"
    assert "100.00 over the annual cap of 1500.00" in first["reason"]
    refused = caregiver.claim(trip())
    assert only_error(refused) == {"code": "BAD_USER_INPUT", "field": "input.trips"}
    rejected = review(gql, first, approve=False, reason="tickets missing")
    assert rejected["status"] == "REJECTED" and rejected["reason"].startswith("tickets missing")
    assert caregiver.submitted(trip())["amountEuros"] == "18.63"


def test_the_annual_cap_holds_when_claims_come_in_at_once(gql, fund_ready):
    caregiver = Caregiver(gql)
    answers = []

    def submit(n):
        trips = [trip(mode="TAXI", costEuros="100", returnTrip=False,
                      toPostcode=f"3511 {chr(65 + n)}{chr(65 + k)}") for k in range(5)]
        answers.append(caregiver.claim(*trips))

    threads = [threading.Thread(target=submit, args=(n,)) for n in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    accepted = [a["data"]["submitTravelClaim"] for a in answers if "errors" not in a]
    assert sum(Decimal(c["amountEuros"]) for c in accepted) == Decimal("1500.00")
    assert len(accepted) == 3
    assert sorted(e["extensions"]["code"] for a in answers for e in a.get("errors", [])) == \
        ["BAD_USER_INPUT", "BAD_USER_INPUT"]


def _revoke(gql, rpc, caregiver):
    assert gql(REVOKE, {"id": caregiver.declaration["id"]}, token=STAFF)["data"]["revokeDeclaration"]


def _declaration(gql, caregiver):
    return gql("""query($r: String!) { declaration(reference: $r) { status validUntil } }""",
               {"r": caregiver.reference}, token=STAFF)["data"]["declaration"]


def _expire(gql, rpc, caregiver):
    """The daily expiry, asked for the day after the declaration's last valid day."""
    valid_until = _declaration(gql, caregiver)["validUntil"]
    assert rpc.declaration.expire_due(
        (date.fromisoformat(valid_until) + timedelta(days=1)).isoformat()) >= 1


@pytest.mark.parametrize("end, reason, status", [
    (_revoke, "the declaration was revoked", "REVOKED"),
    (_expire, "the declaration expired", "EXPIRED")])
def test_the_end_of_a_declaration_puts_open_claims_on_hold_through_the_broker(
        gql, fund_ready, rpc, end, reason, status):
    caregiver = Caregiver(gql)
    submitted = caregiver.submitted(trip())
    approved = review(gql, caregiver.submitted(trip(mode="BICYCLE")))
    rejected = review(gql, caregiver.submitted(trip(mode="TAXI", costEuros="40")), approve=False,
                      reason="no receipt")
    end(gql, rpc, caregiver)

    def held():
        claims = {c["id"]: c for c in caregiver.mine()}
        on_hold = all(claims[c["id"]]["status"] == "ON_HOLD" for c in (submitted, approved))
        return claims if on_hold else None

    held = eventually(held)
    assert held, caregiver.mine()
    assert held[rejected["id"]]["status"] == "REJECTED"
    hold = held[approved["id"]]["history"][-1]
    assert (hold["fromStatus"], hold["toStatus"], hold["actorRole"], hold["reason"]) == (
        "APPROVED", "ON_HOLD", "system", reason)
    assert held[submitted["id"]]["reason"] == reason
    assert _declaration(gql, caregiver)["status"] == status
    # A hold is lifted only by a new review.
    again = review(gql, held[approved["id"]], reason="trips were made while it was valid")
    assert again["status"] == "APPROVED"


def _sepa_file(gql, batch, who=FUND, status=200):
    response = requests.get(gql.url.replace("/graphql", batch["sepaXmlUrl"]),
                            headers={"Authorization": f"Bearer {who}"}, timeout=30)
    assert response.status_code == status, response.text
    if status != 200:
        return response.json()["errors"][0]["extensions"]["code"]
    assert response.headers["Content-Type"].startswith("application/xml")
    return response.content


def _end_to_end_ids(xml):
    return [e.text for e in ElementTree.fromstring(xml).iter() if e.tag.endswith("}EndToEndId")]


def _at_once(*calls):
    """Runs the calls at the same moment; their answers in the order given."""
    answers = [None] * len(calls)

    def run(number):
        answers[number] = calls[number]()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


def _approved_claims(gql, count):
    caregivers = [Caregiver(gql) for _ in range(count)]
    return caregivers, [review(gql, c.submitted(trip())) for c in caregivers]


def _status(gql, claim):
    return gql(CLAIM, {"id": claim["id"]}, token=FUND)["data"]["travelClaim"]["status"]


class PaidEvents:
    """The travel_claim.paid events published while it is open, by claim id."""

    def __init__(self, amqp_uri):
        self.connection = Connection(amqp_uri)
        exchange = Exchange("travel_costs.events", type="topic", durable=True)
        self.queue = Queue(f"test-paid-{uuid.uuid4().hex[:6]}", exchange=exchange,
                           routing_key="travel_claim.paid", auto_delete=True)(self.connection.channel())
        self.queue.declare()
        self.seen = []

    def ids(self):
        while (message := self.queue.get(no_ack=True)) is not None:
            self.seen.append(message.payload["payload"])
        return [p["id"] for p in self.seen]

    def close(self):
        self.connection.close()


def test_four_eyes_a_proposal_pays_nothing_until_another_fund_member_releases_it(
        gql, fund_ready, platform, amqp_uri):
    caregivers, claims = _approved_claims(gql, 3)
    claims += [review(gql, caregivers[0].submitted(trip(mode="TAXI", costEuros="55.55")))]
    ours = sorted(c["id"] for c in claims)
    metrics_url = f"http://{platform.environ['TRAVEL_COSTS_WEB_ADDRESS']}/metrics"
    paid_before = scrape(metrics_url, "mantelzorg_travel_claims_paid_total")
    events = PaidEvents(amqp_uri)
    try:
        batch = gql(BATCH, token=FUND)["data"]["createPayoutBatch"]
        assert batch["status"] == "AWAITING_RELEASE" and batch["releasedAt"] is None
        # Proposed: the claims stay APPROVED, nothing is paid or announced, no file is served.
        assert all(_status(gql, c) == "APPROVED" for c in claims)
        assert _sepa_file(gql, batch, status=409) == "CONFLICT"
        listed = gql(BATCHES, {"first": 100}, token=ADMIN)["data"]["payoutBatches"]
        assert listed[0] == batch
        # The proposer cannot release it.
        assert only_error(gql(RELEASE, {"id": batch["id"]}, token=FUND))["code"] == "FORBIDDEN"
        time.sleep(1)
        assert not set(events.ids()) & set(ours)
        assert scrape(metrics_url, "mantelzorg_travel_claims_paid_total") == paid_before

        # Two other fund members release it at the same moment: it is released once.
        answers = _at_once(lambda: gql(RELEASE, {"id": batch["id"]}, token=SECOND),
                           lambda: gql(RELEASE, {"id": batch["id"]}, token=THIRD))
        released = [a["data"]["releasePayoutBatch"] for a in answers if "errors" not in a]
        assert len(released) == 1, answers
        assert [error_codes(a) for a in answers if "errors" in a] == [["CONFLICT"]]
        assert released[0]["status"] == "RELEASED" and released[0]["releasedAt"]
        assert {k: v for k, v in released[0].items() if k not in ("status", "releasedAt")} == \
            {k: v for k, v in batch.items() if k not in ("status", "releasedAt")}
        assert only_error(gql(RELEASE, {"id": batch["id"]}, token=ADMIN))["code"] == "CONFLICT"

        for claim in claims:
            paid = gql(CLAIM, {"id": claim["id"]}, token=FUND)["data"]["travelClaim"]
            assert paid["status"] == "PAID" and paid["history"][-1]["actorRole"] == "system"
        assert eventually(lambda: set(ours) <= set(events.ids()))
        paid_events = [p for p in events.seen if p["id"] in ours]
        assert len(paid_events) == len(ours)
        assert {p["payout_batch_id"] for p in paid_events} == {batch["id"]}
    finally:
        events.close()
    assert scrape(metrics_url, "mantelzorg_travel_claims_paid_total") >= paid_before + len(claims)

    # The released file: a pain.001 valid against its schema, with each claim once.
    xml = _sepa_file(gql, released[0])
    schema = xmlschema.XMLSchema(str(files("sepaxml") / "schemas" / "pain.001.001.09.xsd"))
    schema.validate(xml.decode())
    in_file = _end_to_end_ids(xml)
    assert len(in_file) == batch["claimCount"] == len(set(in_file))
    assert sorted(i for i in in_file if i in ours) == ours
    total = [e.text for e in ElementTree.fromstring(xml).iter() if e.tag.endswith("}CtrlSum")]
    assert total[0] == batch["totalEuros"]
    listed = gql(BATCHES, {"first": 100}, token=FUND)["data"]["payoutBatches"]
    assert [b for b in listed if b["id"] == batch["id"]] == released

    statement = gql(STATEMENT, {"year": TODAY.year}, token=caregivers[0].token)["data"]["travelStatement"]
    assert statement == {"year": TODAY.year, "claimCount": 2, "paidEuros": "74.18",
                         "pdfUrl": f"/travel-statements/{TODAY.year}.pdf"}
    pdf = requests.get(gql.url.replace("/graphql", statement["pdfUrl"]),
                       headers={"Authorization": f"Bearer {caregivers[0].token}"}, timeout=30)
    assert pdf.status_code == 200 and pdf.headers["Content-Type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF") and f"reiskostenfonds {TODAY.year}".encode() in pdf.content
    last_year = gql(STATEMENT, {"year": TODAY.year - 1}, token=caregivers[0].token)
    assert last_year["data"]["travelStatement"]["claimCount"] == 0


def test_proposals_at_once_and_a_second_proposal_never_share_a_claim(gql, fund_ready):
    _caregivers, first_claims = _approved_claims(gql, 3)
    answers = _at_once(lambda: gql(BATCH, token=FUND), lambda: gql(BATCH, token=SECOND))
    proposed = [a["data"]["createPayoutBatch"] for a in answers if "errors" not in a]
    assert proposed and all(error_codes(a) == ["BAD_USER_INPUT"] for a in answers if "errors" in a)
    # Nothing left to propose: every approved claim is in a batch that awaits release.
    assert only_error(gql(BATCH, token=THIRD)) == {"code": "BAD_USER_INPUT"}

    # A second proposal while those await release holds only the claim approved since.
    _caregivers, [later] = _approved_claims(gql, 1)
    second = gql(BATCH, token=THIRD)["data"]["createPayoutBatch"]
    assert second["claimCount"] == 1 and all(_status(gql, c) == "APPROVED" for c in first_claims)

    files_of = {}
    for batch in [*proposed, second]:
        releaser = ADMIN if batch is not second else FUND
        assert gql(RELEASE, {"id": batch["id"]}, token=releaser)["data"]["releasePayoutBatch"][
            "status"] == "RELEASED"
        files_of[batch["id"]] = _end_to_end_ids(_sepa_file(gql, batch))
    assert files_of[second["id"]] == [later["id"]]
    in_files = [i for ids in files_of.values() for i in ids]
    assert len(in_files) == len(set(in_files))                           # no claim twice
    assert {c["id"] for c in [*first_claims, later]} <= set(in_files)    # each paid once
    assert all(_status(gql, c) == "PAID" for c in [*first_claims, later])


def test_payout_batches_are_listed_newest_first_in_pages(gql, fund_ready):
    made = []
    for _ in range(3):
        _approved_claims(gql, 1)
        made.append(gql(BATCH, token=FUND)["data"]["createPayoutBatch"]["id"])
    seen, after = [], None
    while True:
        page = gql(BATCHES, {"first": 2, "after": after}, token=FUND)["data"]["payoutBatches"]
        if not page:
            break
        seen += [b["id"] for b in page]
        after = page[-1]["id"]
    assert [i for i in seen if i in made] == made[::-1] and len(seen) == len(set(seen))
    assert only_error(gql(BATCHES, {"after": "nonsense"}, token=FUND)) == {
        "code": "BAD_USER_INPUT", "field": "after"}
    assert error_codes(gql(BATCHES, {"first": 101}, token=FUND)) == ["BAD_USER_INPUT"]
    assert only_error(gql(RELEASE, {"id": str(uuid.uuid4())}, token=SECOND)) == {
        "code": "NOT_FOUND"}
    for batch_id in made:   # the next tests start with nothing awaiting release
        gql(RELEASE, {"id": batch_id}, token=SECOND)


def test_the_sepa_file_and_the_statement_are_for_their_roles_only(gql, fund_ready):
    caregiver = Caregiver(gql)
    review(gql, caregiver.submitted(trip()))
    batch = gql(BATCH, token=ADMIN)["data"]["createPayoutBatch"]
    gql(RELEASE, {"id": batch["id"]}, token=FUND)
    assert _sepa_file(gql, batch, who=ADMIN) == _sepa_file(gql, batch, who=FUND)
    url = gql.url.replace("/graphql", batch["sepaXmlUrl"])
    for who, status in ((caregiver.token, 403), (STAFF, 403), (None, 401), ("not-a-jwt", 401)):
        headers = {"Authorization": f"Bearer {who}"} if who else {}
        response = requests.get(url, headers=headers, timeout=10)
        assert response.status_code == status and response.json()["errors"]
    missing = requests.get(url.replace(batch["id"], str(uuid.uuid4())),
                           headers={"Authorization": f"Bearer {FUND}"}, timeout=10)
    assert missing.status_code == 404
    pdf_url = gql.url.replace("/graphql", f"/travel-statements/{TODAY.year}.pdf")
    for who, status in ((FUND, 403), (None, 401)):
        headers = {"Authorization": f"Bearer {who}"} if who else {}
        assert requests.get(pdf_url, headers=headers, timeout=10).status_code == status


def test_authorisation_follows_the_contract_table(gql, fund_ready):
    caregiver, other = Caregiver(gql), Caregiver(gql)
    claim = caregiver.submitted(trip())
    municipality, partner = STAFF, token("partner", "partner")
    forbidden = [
        (SUBMIT, {"input": {"declarationReference": caregiver.reference, "iban": IBAN,
                            "accountHolder": "x", "trips": [trip()]}}, (municipality, FUND, ADMIN)),
        (MINE, None, (FUND, ADMIN, municipality)),
        (CLAIM, {"id": claim["id"]}, (other.token, municipality, partner)),
        (LIST, {}, (caregiver.token, municipality, partner)),
        (REVIEW, {"id": claim["id"], "approve": True}, (caregiver.token, municipality)),
        (BATCH, None, (caregiver.token, municipality, partner)),
        (RELEASE, {"id": str(uuid.uuid4())}, (caregiver.token, municipality, partner)),
        (BATCHES, {}, (caregiver.token, municipality, partner)),
        (STATEMENT, {"year": TODAY.year}, (FUND, ADMIN, municipality)),
    ]
    for query, variables, tokens in forbidden:
        for who in tokens:
            assert error_codes(gql(query, variables, token=who)) == ["FORBIDDEN"], (query, who)
        assert error_codes(gql(query, variables)) == ["UNAUTHENTICATED"], query
    assert gql(CLAIM, {"id": str(uuid.uuid4())}, token=FUND)["data"]["travelClaim"] is None
    # Another caregiver's claim answers exactly as an id that is not in use.
    mine, unknown = (gql(CLAIM, {"id": claim_id}, token=other.token)
                     for claim_id in (claim["id"], str(uuid.uuid4())))
    assert mine == unknown and error_codes(mine) == ["FORBIDDEN"]
    listed = gql(LIST, {"status": "SUBMITTED", "first": 100}, token=ADMIN)["data"]["travelClaims"]
    assert all(c["status"] == "SUBMITTED" for c in listed)
    assert error_codes(gql(LIST, {"first": 101}, token=FUND)) == ["BAD_USER_INPUT"]
    assert only_error(gql(LIST, {"after": "nonsense"}, token=FUND)) == {
        "code": "BAD_USER_INPUT", "field": "after"}
    assert only_error(gql(STATEMENT, {"year": 1899}, token=caregiver.token)) == {
        "code": "BAD_USER_INPUT", "field": "year"}


def test_the_fund_lists_claims_in_the_order_they_came_in(gql, fund_ready):
    caregiver = Caregiver(gql)
    mine = [caregiver.submitted(trip(toPostcode=f"3511 C{chr(65 + n)}"))["id"] for n in range(3)]
    seen, after = [], None
    while True:
        page = gql(LIST, {"status": "SUBMITTED", "first": 2, "after": after}, token=FUND)
        items = page["data"]["travelClaims"]
        if not items:
            break
        seen += [c["id"] for c in items]
        after = items[-1]["id"]
    assert [i for i in seen if i in mine] == mine and len(seen) == len(set(seen))


def test_events_logs_and_answers_carry_no_iban_and_no_bsn(gql, fund_ready, platform, amqp_uri):
    exchange = Exchange("travel_costs.events", type="topic", durable=True)
    queue = Queue(f"test-travel-claims-{uuid.uuid4().hex[:6]}", exchange=exchange,
                  routing_key="travel_claim.#", auto_delete=True)
    with Connection(amqp_uri) as connection:
        bound = queue(connection.channel())
        bound.declare()
        caregiver = Caregiver(gql)
        claim = review(gql, caregiver.submitted(trip()))
        bodies = []

        def arrived():
            while (message := bound.get(no_ack=True)) is not None:
                bodies.append(message.payload)
            return len([b for b in bodies if b["payload"]["id"] == claim["id"]]) >= 2

        assert eventually(arrived)
    types = [b["type"] for b in bodies if b["payload"]["id"] == claim["id"]]
    assert types == ["travel_claim.submitted", "travel_claim.approved"]
    text = json.dumps(bodies) + json.dumps(claim)
    assert IBAN not in text and caregiver.bsn not in text and "A. de Vries" not in text
    logged = json.dumps(log_lines(platform, "travel_costs") + log_lines(platform, "gateway"))
    assert IBAN not in logged and caregiver.bsn not in logged


def test_the_registry_republishes_its_areas_to_a_fund_deployed_later(rpc, fund_ready, platform,
                                                                    monkeypatch, capsys):
    """``mantelzorg republish pc4_areas.imported``: every stored area once more, straight into
    the fund's queue, and the fund's copy stays whole."""
    metrics_url = f"http://{platform.environ['TRAVEL_COSTS_WEB_ADDRESS']}/metrics"
    sample = ('mantelzorg_events_handled_total{outcome="handled",service="travel_costs",'
              'type="pc4_areas.imported"}')
    before = scrape(metrics_url, sample)
    areas = rpc.travel_costs.health()["pc4_areas"]
    queue = Subscription("pc4_areas.imported", "travel_costs", "on_pc4_areas_imported").queue
    operator_of(platform, monkeypatch)
    assert cli.main(["republish", "pc4_areas.imported", "--to", queue]) == 0
    assert f"sent {areas} pc4_areas.imported event(s)" in capsys.readouterr().out
    assert eventually(lambda: scrape(metrics_url, sample) >= before + areas, timeout=120)
    assert rpc.travel_costs.health()["pc4_areas"] == areas
