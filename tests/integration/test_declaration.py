"""The caregiver declaration end to end: gateway, declaration service, travel-cost fund, on
the real broker with the embedded store."""
import json
import uuid
from datetime import date, timedelta

import jwt
import pytest
import requests

from ops import cli
from tests.support import (CAREGIVER_NAME, Handled, error_codes, eventually, log_lines,
                           operator_of, pdf_text, personal_email, random_bsn, recipient_name,
                           scrape, token)

AMSTERDAM, UTRECHT, ENSCHEDE = "GM0363", "GM0344", "GM0153"
FIELDS = """id reference status municipalityCode purposes hoursPerWeek careSince validFrom
            validUntil decisionReason verificationCode token createdAt unmetCriteria
            history { fromStatus toStatus action actorRole reason }"""
REQUEST = f"""mutation($input: DeclarationRequestInput!) {{
  requestDeclaration(input: $input) {{ {FIELDS} }} }}"""
DECIDE = f"""mutation($id: ID!, $decision: Decision!, $reason: String) {{
  decideDeclaration(id: $id, decision: $decision, reason: $reason) {{ {FIELDS} }} }}"""
REVOKE = f"""mutation($id: ID!, $reason: String!) {{
  revokeDeclaration(id: $id, reason: $reason) {{ {FIELDS} }} }}"""
GET = f"""query($reference: String!) {{ declaration(reference: $reference) {{ {FIELDS} }} }}"""
LIST = """query($code: String!, $status: DeclarationStatus, $first: Int, $after: String) {
  declarations(municipalityCode: $code, status: $status, first: $first, after: $after) {
    reference status } }"""
CHECK = """query($reference: String!, $code: String!, $purpose: DeclarationPurpose!) {
  checkDeclaration(reference: $reference, verificationCode: $code, purpose: $purpose) {
    valid status validUntil purposeAccepted municipalityCode } }"""
CHECK_TOKEN = """query($token: String!, $purpose: DeclarationPurpose!) {
  checkDeclarationToken(token: $token, purpose: $purpose) {
    valid status validUntil purposeAccepted municipalityCode } }"""
NOT_VALID = {"valid": False, "status": None, "validUntil": None, "purposeAccepted": False,
             "municipalityCode": None}


def request_input(municipality=AMSTERDAM, bsn=None, **changes):
    data = {
        "municipalityCode": municipality,
        "caregiver": {"bsn": bsn or random_bsn(), "name": CAREGIVER_NAME, "postcode": "1012ab",
                      "email": personal_email()},
        "careRecipient": {"name": recipient_name(), "postcode": "1013 AA",
                          "relationship": "parent"},
        "hoursPerWeek": "12.5",
        "careSince": (date.today() - timedelta(days=400)).isoformat(),
        "purposes": ["PARKING_PERMIT", "TRAVEL_COST_FUND"],
    }
    data.update(changes)
    return data


def caregiver(bsn=None, sub=None):
    """A caregiver's token: the BSN in it is the one the identity provider proved."""
    return token("caregiver", sub or f"cg-{uuid.uuid4().hex[:8]}", bsn=bsn or random_bsn())


def filer(data):
    """The caregiver whose BSN ``data`` names: who may file it."""
    return caregiver(data["caregiver"]["bsn"])


def staff(code=AMSTERDAM):
    return token("municipality", f"staff-{code}", municipality=code)


def partner():
    return token("partner", f"partner-{uuid.uuid4().hex[:8]}")


def request(gql, data=None, who=None):
    data = data or request_input()
    answer = gql(REQUEST, {"input": data}, token=who or filer(data))
    assert "errors" not in answer, answer
    return answer["data"]["requestDeclaration"]


def decide(gql, declaration, decision="ISSUE", reason=None, who=None):
    answer = gql(DECIDE, {"id": declaration["id"], "decision": decision, "reason": reason},
                 token=who or staff(declaration["municipalityCode"]))
    assert "errors" not in answer, answer
    return answer["data"]["decideDeclaration"]


def check(gql, reference, code, purpose="PARKING_PERMIT", who=None):
    answer = gql(CHECK, {"reference": reference, "code": code, "purpose": purpose},
                 token=who or partner())
    assert "errors" not in answer, answer
    return answer["data"]["checkDeclaration"]


def add_months(day, months):
    month = day.month - 1 + months
    year, month = day.year + month // 12, month % 12 + 1
    while True:
        try:
            return date(year, month, day.day)
        except ValueError:
            day = day - timedelta(days=1)


def issued(gql, data=None, owner=None):
    data = data or request_input()
    owner = owner or filer(data)
    requested = request(gql, data, owner)
    return requested, decide(gql, requested), owner


def test_the_lifecycle_request_issue_check_revoke(gql, platform, known):
    # the fund learns of the issue and the revocation through their events
    fund_issued = Handled(platform, "travel_costs", "declaration.issued")
    fund_revoked = Handled(platform, "travel_costs", "declaration.revoked")
    data = request_input()
    owner = filer(data)
    requested = request(gql, data, owner)
    assert requested["status"] == "REQUESTED"
    assert requested["reference"].startswith(f"MZV-{date.today().year}-")
    assert requested["verificationCode"] and requested["token"] is None
    assert requested["unmetCriteria"] == []
    assert requested["hoursPerWeek"] == "12.5"
    assert [h["toStatus"] for h in requested["history"]] == ["REQUESTED"]

    decided = decide(gql, requested, reason="criteria met")
    assert decided["status"] == "ISSUED"
    assert decided["validFrom"] == date.today().isoformat()
    assert date.fromisoformat(decided["validUntil"]) > date.today() + timedelta(days=360)
    assert decided["token"] and decided["verificationCode"] == requested["verificationCode"]
    assert [(h["fromStatus"], h["toStatus"], h["actorRole"]) for h in decided["history"]] == [
        (None, "REQUESTED", "caregiver"), ("REQUESTED", "ISSUED", "municipality")]

    reference, code = requested["reference"], requested["verificationCode"]
    assert check(gql, reference, code) == {
        "valid": True, "status": "ISSUED", "validUntil": decided["validUntil"],
        "purposeAccepted": True, "municipalityCode": AMSTERDAM}
    assert check(gql, reference, code.lower().replace("-", ""))["valid"] is True
    assert check(gql, reference, code, "CO_TENANCY")["purposeAccepted"] is False
    assert check(gql, reference, "WRONG-CODE-0000") == NOT_VALID
    assert check(gql, "MZV-1900-999999", code) == NOT_VALID
    assert fund_issued.grown_by(1)

    revoked = gql(REVOKE, {"id": requested["id"], "reason": "care ended"}, token=staff())
    assert revoked["data"]["revokeDeclaration"]["status"] == "REVOKED"
    assert revoked["data"]["revokeDeclaration"]["token"] is None
    assert check(gql, reference, code) == {
        "valid": False, "status": "REVOKED", "validUntil": decided["validUntil"],
        "purposeAccepted": False, "municipalityCode": AMSTERDAM}
    assert fund_revoked.grown_by(1)

    # anything outside the transition table is a conflict, and changes nothing
    again = gql(DECIDE, {"id": requested["id"], "decision": "ISSUE"}, token=staff())
    assert error_codes(again) == ["CONFLICT"]
    again = gql(REVOKE, {"id": requested["id"], "reason": "twice"}, token=staff())
    assert error_codes(again) == ["CONFLICT"]
    final = gql(GET, {"reference": reference}, token=owner)["data"]["declaration"]
    assert final["status"] == "REVOKED" and len(final["history"]) == 3
    assert final["history"][-1]["reason"] == "care ended"


def test_personal_data_is_never_returned_logged_or_published(gql, platform, known):
    data = request_input()
    requested = request(gql, data)
    decide(gql, requested)
    bsn = data["caregiver"]["bsn"]
    answer = gql(GET, {"reference": requested["reference"]}, token=staff())
    text = json.dumps(answer)
    for secret in (bsn, data["caregiver"]["name"], data["careRecipient"]["name"],
                   data["caregiver"]["email"]):
        assert secret not in text
    for name in ("gateway", "declaration", "travel_costs"):
        assert bsn not in platform.log_file(name).read_text()
        assert data["careRecipient"]["name"] not in platform.log_file(name).read_text()
    assert any(line.get("event") == "declaration.requested"
               and line.get("reference") == requested["reference"]
               for line in log_lines(platform, "declaration"))


def test_a_request_below_the_criteria_is_filed_and_shows_what_fails(gql, known):
    data = request_input(hoursPerWeek="8", careSince=(date.today() - timedelta(days=30)).isoformat())
    requested = request(gql, data)
    assert requested["status"] == "REQUESTED"
    assert sorted(requested["unmetCriteria"]) == ["CARE_DURATION", "HOURS_PER_WEEK"]

    no_reason = gql(DECIDE, {"id": requested["id"], "decision": "REJECT"}, token=staff())
    assert error_codes(no_reason) == ["BAD_USER_INPUT"]
    assert no_reason["errors"][0]["extensions"]["field"] == "reason"
    rejected = decide(gql, requested, "REJECT", "less than 8 hours a week")
    assert rejected["status"] == "REJECTED" and rejected["decisionReason"] == "less than 8 hours a week"
    assert rejected["validUntil"] is None and rejected["token"] is None


def test_one_active_declaration_per_caregiver_recipient_and_municipality(gql, known):
    data = request_input()
    first = request(gql, data)
    duplicate = gql(REQUEST, {"input": data}, token=filer(data))
    assert error_codes(duplicate) == ["CONFLICT"]
    assert first["reference"] in duplicate["errors"][0]["message"]
    assert data["caregiver"]["bsn"] not in duplicate["errors"][0]["message"]
    # someone else filing for this BSN learns nothing of who cares for whom
    probe = gql(REQUEST, {"input": data}, token=caregiver())
    assert error_codes(probe) == ["FORBIDDEN"]
    assert first["reference"] not in json.dumps(probe) and data["caregiver"]["bsn"] not in json.dumps(probe)
    # another recipient or another municipality is another declaration
    request(gql, {**data, "careRecipient": {**data["careRecipient"], "name": "Someone Else"}})
    request(gql, {**data, "municipalityCode": UTRECHT})
    # once the first is no longer active, a new one may be requested
    decide(gql, first, "REJECT", "incomplete")
    assert request(gql, data)["reference"] != first["reference"]


def test_concurrent_duplicates_leave_exactly_one(rpc, known):
    data = request_input()
    actor = {"sub": "cg-race", "role": "caregiver", "municipality": None, "support_point": None,
             "bsn": data["caregiver"]["bsn"]}
    calls = [rpc.declaration.request_declaration.call_async(data, actor) for _ in range(4)]
    outcomes = []
    for call in calls:
        try:
            outcomes.append(call.result()["reference"])
        except Exception as error:
            outcomes.append(type(error).__name__)
    assert len([o for o in outcomes if o.startswith("MZV-")]) == 1, outcomes
    assert outcomes.count("Conflict") == 3, outcomes


BAD_INPUTS = [
    ("input.caregiver.bsn", {"caregiver": {"bsn": "123456780", "name": "A", "postcode": "1012 AB"}}),
    ("input.careSince", {"careSince": (date.today() + timedelta(days=3)).isoformat()}),
    ("input.hoursPerWeek", {"hoursPerWeek": "-4"}),
    ("input.municipalityCode", {"municipalityCode": "GM9999"}),
    ("input.purposes.0", {"purposes": ["PARKING_PERMIT_PLUS"]}),
    ("input.purposes", {"purposes": []}),
    ("input.caregiver.postcode", {"caregiver": {"bsn": "111222333", "name": "A", "postcode": "12"}}),
    ("input.careRecipient.relationship",
     {"careRecipient": {"name": "B", "postcode": "1012 AB", "relationship": " "}}),
    ("input.hoursPerWeek", {"hoursPerWeek": "many"}),
    ("input.careSince", {"careSince": "2020-02-30"}),
]


@pytest.mark.parametrize("field,change", BAD_INPUTS, ids=[f for f, _ in BAD_INPUTS])
def test_bad_input_names_its_field_and_stores_nothing(gql, known, field, change):
    data = request_input(**change)
    before = gql(LIST, {"code": AMSTERDAM, "first": 100}, token=token("admin"))
    # input is checked before whose BSN it is: a token of its own BSN gets the same answer
    answer = gql(REQUEST, {"input": data}, token=caregiver())
    assert error_codes(answer) == ["BAD_USER_INPUT"], answer
    assert answer["errors"][0]["extensions"]["field"] == field
    assert "123456780" not in json.dumps(answer)
    after = gql(LIST, {"code": AMSTERDAM, "first": 100}, token=token("admin"))
    assert after == before


def test_who_may_do_what(gql, known):
    """The contract's table; the home municipality here is Enschede."""
    data = request_input(ENSCHEDE)
    owner = filer(data)
    requested = request(gql, data, owner)
    reference, code = requested["reference"], requested["verificationCode"]
    read = lambda who: gql(GET, {"reference": reference}, token=who)

    assert read(owner)["data"]["declaration"]["reference"] == reference
    assert read(staff(ENSCHEDE))["data"]["declaration"]["reference"] == reference
    assert read(token("admin"))["data"]["declaration"]["reference"] == reference
    # whom it is not for learns nothing: the same NOT_FOUND as for an unknown reference
    unknown = gql(GET, {"reference": "MZV-1900-000001"}, token=token("admin"))
    assert error_codes(unknown) == ["NOT_FOUND"] and unknown["data"]["declaration"] is None
    for who in (caregiver(), staff(UTRECHT), partner(), token("fund")):
        refused = read(who)
        assert error_codes(refused) == ["NOT_FOUND"]
        assert refused["errors"][0]["message"] == unknown["errors"][0]["message"]
    assert error_codes(read(None)) == ["UNAUTHENTICATED"]

    assert error_codes(gql(REQUEST, {"input": request_input(ENSCHEDE)})) == ["UNAUTHENTICATED"]
    assert error_codes(gql(REQUEST, {"input": request_input(ENSCHEDE)}, token=partner())) == ["FORBIDDEN"]
    assert error_codes(gql(REQUEST, {"input": request_input(ENSCHEDE)}, token=token("admin"))) == ["FORBIDDEN"]
    assert error_codes(gql(REQUEST, {"input": request_input(ENSCHEDE)}, token=staff(UTRECHT))) == ["FORBIDDEN"]
    on_behalf = request(gql, request_input(ENSCHEDE), staff(ENSCHEDE))
    assert on_behalf["verificationCode"]

    listed = lambda who: gql(LIST, {"code": ENSCHEDE, "first": 100}, token=who)
    for who in (staff(ENSCHEDE), token("admin")):
        assert reference in [d["reference"] for d in listed(who)["data"]["declarations"]]
    assert error_codes(listed(staff(UTRECHT))) == ["FORBIDDEN"]
    assert error_codes(listed(owner)) == ["FORBIDDEN"]
    assert error_codes(listed(partner())) == ["FORBIDDEN"]
    assert error_codes(gql(LIST, {"code": ENSCHEDE, "first": 101}, token=staff(ENSCHEDE))) == ["BAD_USER_INPUT"]

    for who in (owner, staff(UTRECHT), partner()):
        answer = gql(DECIDE, {"id": requested["id"], "decision": "ISSUE"}, token=who)
        assert error_codes(answer) == ["FORBIDDEN"], who
        answer = gql(REVOKE, {"id": requested["id"], "reason": "x"}, token=who)
        assert error_codes(answer) == ["FORBIDDEN"]
    assert decide(gql, requested, who=token("admin"))["status"] == "ISSUED"

    for who in (owner, token("fund"), None):
        answer = gql(CHECK, {"reference": reference, "code": code, "purpose": "OTHER"}, token=who)
        assert error_codes(answer) in (["FORBIDDEN"], ["UNAUTHENTICATED"])
    assert check(gql, reference, code, who=staff(UTRECHT))["valid"] is True
    assert check(gql, reference, code, who=token("admin"))["valid"] is True


def test_listing_pages_through_a_municipality(gql, known):
    for _ in range(3):
        request(gql, request_input(UTRECHT), staff(UTRECHT))
    page = gql(LIST, {"code": UTRECHT, "status": "REQUESTED", "first": 2}, token=staff(UTRECHT))
    first = [d["reference"] for d in page["data"]["declarations"]]
    assert len(first) == 2
    rest = gql(LIST, {"code": UTRECHT, "status": "REQUESTED", "first": 100, "after": first[-1]},
               token=staff(UTRECHT))["data"]["declarations"]
    assert rest and not set(first) & {d["reference"] for d in rest}
    unset = gql(LIST, {"code": UTRECHT, "first": None}, token=staff(UTRECHT))["data"]["declarations"]
    assert 3 <= len(unset) <= 20
    assert all(d["status"] == "REQUESTED" for d in rest)


def test_repeated_failed_checks_are_rate_limited_per_client(gql, platform, known):
    requested, _, _ = issued(gql)
    reference, code = requested["reference"], requested["verificationCode"]
    guesser = partner()
    metrics = f"http://{platform.environ['DECLARATION_WEB_ADDRESS']}/metrics"
    before = [scrape(metrics, f"mantelzorg_declaration_{name}_checks_total")
              for name in ("failed", "refused")]
    for attempt in range(10):
        assert check(gql, reference, f"GUESS-{attempt:04d}-XXXX", who=guesser) == NOT_VALID
    # the right code no longer helps this client, but does for another
    assert check(gql, reference, code, who=guesser) == NOT_VALID
    assert check(gql, reference, code)["valid"] is True
    # operators see it happen
    assert scrape(metrics, "mantelzorg_declaration_failed_checks_total") == before[0] + 10
    assert scrape(metrics, "mantelzorg_declaration_refused_checks_total") == before[1] + 1


SETTINGS = """mutation($code: String!, $input: DeclarationSettingsInput!) {
  setDeclarationSettings(municipalityCode: $code, input: $input) {
    municipalityCode minCareMonths minHoursPerWeek validityMonths purposes } }"""
READ_SETTINGS = """query($code: String!) { declarationSettings(municipalityCode: $code) {
  minCareMonths minHoursPerWeek validityMonths purposes } }"""


def test_local_choices_override_the_national_defaults(gql, known):
    code = "GM0014"   # Groningen
    defaults = gql(READ_SETTINGS, {"code": "GM0034"})["data"]["declarationSettings"]
    assert defaults == {"minCareMonths": 3, "minHoursPerWeek": "8", "validityMonths": 12,
                        "purposes": ["PARKING_PERMIT", "CARE_HOUSING", "CO_TENANCY",
                                     "HOUSING_URGENCY", "JOB_SEEKING_EXEMPTION",
                                     "TRAVEL_COST_FUND", "OTHER"]}
    choices = {"minHoursPerWeek": "4", "validityMonths": 6, "purposes": ["PARKING_PERMIT"]}
    assert error_codes(gql(SETTINGS, {"code": code, "input": choices}, token=staff())) == ["FORBIDDEN"]
    bad = gql(SETTINGS, {"code": code, "input": {"validityMonths": 0}}, token=staff(code))
    assert error_codes(bad) == ["BAD_USER_INPUT"] and bad["errors"][0]["extensions"]["field"] == "input.validityMonths"
    chosen = gql(SETTINGS, {"code": code, "input": choices}, token=staff(code))["data"]["setDeclarationSettings"]
    assert chosen == {"municipalityCode": code, "minCareMonths": 3, "minHoursPerWeek": "4",
                      "validityMonths": 6, "purposes": ["PARKING_PERMIT"]}

    data = request_input(code, purposes=["CO_TENANCY"])
    unsupported = gql(REQUEST, {"input": data}, token=filer(data))
    assert error_codes(unsupported) == ["BAD_USER_INPUT"]
    assert unsupported["errors"][0]["extensions"]["field"] == "input.purposes"
    requested = request(gql, request_input(code, hoursPerWeek="5", purposes=["PARKING_PERMIT"]))
    assert requested["unmetCriteria"] == []
    decided = decide(gql, requested)
    assert decided["validUntil"] == (add_months(date.today(), 6) - timedelta(days=1)).isoformat()


def test_expiry_happens_once_even_when_two_replicas_run_it(gql, rpc, known, platform,
                                                          monkeypatch, capsys):
    requested, decided, owner = issued(gql)
    after_validity = (date.fromisoformat(decided["validUntil"]) + timedelta(days=1)).isoformat()
    rpc.declaration.expire_due(decided["validUntil"])   # its last valid day: not yet
    assert gql(GET, {"reference": requested["reference"]}, token=owner)["data"]["declaration"]["status"] == "ISSUED"

    fund_expired = Handled(platform, "travel_costs", "declaration.expired").settled()
    runs = [rpc.declaration.expire_due.call_async(after_validity) for _ in range(2)]
    moved = sum(run.result() for run in runs)
    assert moved >= 1
    final = gql(GET, {"reference": requested["reference"]}, token=owner)["data"]["declaration"]
    assert final["status"] == "EXPIRED"
    assert [h["toStatus"] for h in final["history"]].count("EXPIRED") == 1
    assert final["history"][-1]["actorRole"] == "system"
    # what is left for the operator's command: nothing
    operator_of(platform, monkeypatch)
    assert cli.main(["expire-declarations", "--today", after_validity]) == 0
    assert capsys.readouterr().out.strip() == "expired 0 declaration(s)"
    assert check(gql, requested["reference"], requested["verificationCode"])["status"] == "EXPIRED"
    assert fund_expired.grown_by(moved)    # this one and any other due then, each once


def _jwks(platform):
    response = requests.get(f"{platform.gateway_url()}/.well-known/jwks.json", timeout=10)
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("application/json")
    return response.json()


def _verify_offline(jwks, signed):
    kid = jwt.get_unverified_header(signed)["kid"]
    key = next(jwt.PyJWK(k) for k in jwks["keys"] if k["kid"] == kid)
    return jwt.decode(signed, key.key, algorithms=["EdDSA"], issuer="mantelzorg-declaration")


def test_the_token_verifies_offline_with_the_published_key(gql, platform, known):
    requested, decided, _ = issued(gql)
    jwks = _jwks(platform)
    assert all(k["kty"] == "OKP" and k["crv"] == "Ed25519" and "d" not in k for k in jwks["keys"])
    claims = _verify_offline(jwks, decided["token"])
    assert set(claims) == {"iss", "reference", "purposes", "municipality", "valid_from",
                           "valid_until", "nbf", "exp"}
    assert claims["reference"] == requested["reference"]
    assert claims["purposes"] == ["PARKING_PERMIT", "TRAVEL_COST_FUND"]
    assert claims["valid_until"] == decided["validUntil"] and claims["municipality"] == AMSTERDAM

    online = gql(CHECK_TOKEN, {"token": decided["token"], "purpose": "TRAVEL_COST_FUND"}, token=partner())
    assert online["data"]["checkDeclarationToken"]["valid"] is True

    header, payload, signature = decided["token"].split(".")
    forged = jwt.utils.base64url_encode(json.dumps({**claims, "purposes": ["CO_TENANCY"]}).encode()).decode()
    tampered = f"{header}.{forged}.{signature}"
    with pytest.raises(jwt.InvalidSignatureError):
        _verify_offline(jwks, tampered)
    refused = gql(CHECK_TOKEN, {"token": tampered, "purpose": "CO_TENANCY"}, token=partner())
    assert refused["data"]["checkDeclarationToken"] == NOT_VALID

    gql(REVOKE, {"id": requested["id"], "reason": "moved away"}, token=staff())
    revoked = gql(CHECK_TOKEN, {"token": decided["token"], "purpose": "TRAVEL_COST_FUND"}, token=partner())
    assert revoked["data"]["checkDeclarationToken"]["valid"] is False
    assert revoked["data"]["checkDeclarationToken"]["status"] == "REVOKED"
    _verify_offline(jwks, decided["token"])   # still a genuine signature: only online refuses it


def test_the_printable_declaration(gql, platform, known):
    bsn = random_bsn()
    asked = request_input(bsn=bsn)
    requested, decided, owner = issued(gql, asked)
    url = f"{platform.gateway_url()}/declarations/{requested['reference']}.pdf"
    get = lambda who: requests.get(url, headers={"Authorization": f"Bearer {who}"} if who else {}, timeout=20)

    printed = get(owner)
    assert printed.status_code == 200 and printed.headers["Content-Type"] == "application/pdf"
    assert printed.content.startswith(b"%PDF") and len(printed.content) > 1500
    text = pdf_text(printed.content)
    assert requested["reference"] in text
    # beside the QR code, the verification code a desk checks online
    assert requested["verificationCode"] in text
    # it names its holder, for a desk to compare with an identity document, and nothing more
    assert "Op naam van" in text and "Anna de Vries" in text
    for private in (bsn, asked["caregiver"]["email"], asked["careRecipient"]["name"], "1012",
                    "1013"):
        assert private not in text
    reads = lambda: gql("{ myPersonalDataAccess { what } }", token=owner)["data"][
        "myPersonalDataAccess"]
    assert reads() == []                       # the owner's own print is no one else's read
    assert get(staff()).status_code == 200
    assert {"what": f"verklaring {requested['reference']} bekeken"} in reads()

    for who, status, code in ((None, 401, "UNAUTHENTICATED"), (caregiver(), 404, "NOT_FOUND"),
                              (staff(UTRECHT), 404, "NOT_FOUND"), (partner(), 403, "FORBIDDEN"),
                              (token("admin"), 403, "FORBIDDEN")):
        refused = get(who)
        assert refused.status_code == status
        assert refused.headers["Content-Type"].startswith("application/json")
        assert error_codes(refused.json()) == [code]
    unknown = requests.get(f"{platform.gateway_url()}/declarations/MZV-1900-000001.pdf",
                           headers={"Authorization": f"Bearer {owner}"}, timeout=20)
    assert unknown.status_code == 404 and error_codes(unknown.json()) == ["NOT_FOUND"]
    pending = request(gql, request_input(bsn=bsn), owner)
    not_issued = requests.get(f"{platform.gateway_url()}/declarations/{pending['reference']}.pdf",
                              headers={"Authorization": f"Bearer {owner}"}, timeout=20)
    assert not_issued.status_code == 409 and error_codes(not_issued.json()) == ["CONFLICT"]


def test_the_reencryption_command_finds_nothing_left_on_an_earlier_key(
        gql, platform, known, monkeypatch, capsys):
    request(gql)
    operator_of(platform, monkeypatch)
    assert cli.main(["reencrypt-personal-data"]) == 0
    assert capsys.readouterr().out.strip().endswith("; 0 left on earlier keys")


MINE = f"""query {{ myDeclarations {{ {FIELDS} }} }}"""
RENEW = f"""mutation($id: ID!) {{ renewVerificationCode(id: $id) {{ {FIELDS} }} }}"""


def test_a_caregiver_files_only_for_their_own_bsn(gql, known):
    data = request_input()
    assert request(gql, data, filer(data))["status"] == "REQUESTED"

    someone_else = request_input()
    refused = gql(REQUEST, {"input": someone_else}, token=caregiver())
    assert error_codes(refused) == ["FORBIDDEN"]
    assert someone_else["caregiver"]["bsn"] not in json.dumps(refused)
    assert gql(MINE, token=filer(someone_else))["data"]["myDeclarations"] == []   # nothing filed

    # a caregiver token without a BSN (bsn=None leaves the claim out) is no caregiver at all
    bare = token("caregiver", "cg-without-bsn", bsn=None)
    assert error_codes(gql(REQUEST, {"input": data}, token=bare)) == ["UNAUTHENTICATED"]
    assert error_codes(gql(MINE, token=bare)) == ["UNAUTHENTICATED"]
    assert error_codes(gql(MINE, token=staff())) == ["FORBIDDEN"]


def test_a_declaration_filed_on_behalf_belongs_to_the_caregiver_whose_bsn_it_carries(
        gql, platform, known):
    bsn = random_bsn()
    data = request_input(bsn=bsn)
    data["caregiver"]["email"] = f"mantelzorger-{bsn[-4:]}@example.nl"
    filed = request(gql, data, staff())
    decided = decide(gql, filed)
    signed_in = caregiver(bsn)     # the caregiver signs in later, with a subject of its own

    mine = gql(MINE, token=signed_in)["data"]["myDeclarations"]
    assert [(d["reference"], d["verificationCode"], d["token"]) for d in mine] == [
        (filed["reference"], filed["verificationCode"], decided["token"])]
    read = gql(GET, {"reference": filed["reference"]}, token=signed_in)["data"]["declaration"]
    assert read["verificationCode"] == filed["verificationCode"]
    url = f"{platform.gateway_url()}/declarations/{filed['reference']}.pdf"
    printed = requests.get(url, headers={"Authorization": f"Bearer {signed_in}"}, timeout=20)
    assert printed.status_code == 200
    assert filed["verificationCode"] in pdf_text(printed.content)

    # a later one of the same caregiver comes first
    later = request(gql, request_input(UTRECHT, bsn=bsn), signed_in)
    mine = gql(MINE, token=signed_in)["data"]["myDeclarations"]
    assert [d["reference"] for d in mine] == [later["reference"], filed["reference"]]

    # anyone else: NOT_FOUND, exactly as for a reference nobody has
    stranger = caregiver()
    nobody = gql(GET, {"reference": "MZV-1900-000002"}, token=stranger)
    refused = gql(GET, {"reference": filed["reference"]}, token=stranger)
    assert error_codes(refused) == error_codes(nobody) == ["NOT_FOUND"]
    assert refused["errors"][0]["message"] == nobody["errors"][0]["message"]
    assert gql(MINE, token=stranger)["data"]["myDeclarations"] == []
    pdf = requests.get(url, headers={"Authorization": f"Bearer {stranger}"}, timeout=20)
    assert pdf.status_code == 404 and error_codes(pdf.json()) == ["NOT_FOUND"]

    # the BSN and the e-mail address travelled in requests only: not in any log line
    for name in ("gateway", "declaration", "travel_costs"):
        logged = platform.log_file(name).read_text()
        assert bsn not in logged and data["caregiver"]["email"] not in logged


def test_a_renewed_code_replaces_the_old_one_and_the_trail_says_who(gql, known):
    requested, _, owner = issued(gql)
    reference, old = requested["reference"], requested["verificationCode"]

    renewed = gql(RENEW, {"id": requested["id"]}, token=owner)["data"]["renewVerificationCode"]
    new = renewed["verificationCode"]
    assert new and new != old and renewed["status"] == "ISSUED"
    assert check(gql, reference, old) == NOT_VALID
    assert check(gql, reference, new)["valid"] is True
    assert renewed["history"][-1] == {"fromStatus": "ISSUED", "toStatus": "ISSUED",
                                      "action": "renew_code", "actorRole": "caregiver",
                                      "reason": None}

    # the issuing municipality may renew it too; the owner then reads the newest code
    again = gql(RENEW, {"id": requested["id"]}, token=staff())["data"]["renewVerificationCode"]
    assert again["history"][-1]["actorRole"] == "municipality"
    read = gql(GET, {"reference": reference}, token=owner)["data"]["declaration"]
    assert read["verificationCode"] == again["verificationCode"] != new
    assert check(gql, reference, new) == NOT_VALID

    for who, code in ((caregiver(), "FORBIDDEN"), (staff(UTRECHT), "FORBIDDEN"),
                      (token("admin"), "FORBIDDEN"), (partner(), "FORBIDDEN"),
                      (None, "UNAUTHENTICATED")):
        assert error_codes(gql(RENEW, {"id": requested["id"]}, token=who)) == [code], who
    unknown = gql(RENEW, {"id": str(uuid.uuid4())}, token=owner)
    assert error_codes(unknown) == ["NOT_FOUND"]
    assert check(gql, reference, again["verificationCode"])["valid"] is True


# --- the applicant, and who read it ------------------------------------------------------

APPLICANT = """applicant { caregiverName caregiverPostcode caregiverEmail careRecipientName
    careRecipientPostcode relationship }"""
WITH_APPLICANT = f"""query($reference: String!) {{ declaration(reference: $reference) {{
    reference decisionDueOn decidedAt createdAt {APPLICANT} }} }}"""
LIST_WITH_APPLICANT = f"""query($code: String!, $after: String) {{
    declarations(municipalityCode: $code, status: REQUESTED, first: 100, after: $after) {{
      reference ...who }} }}
    fragment who on Declaration {{ {APPLICANT} }}"""
ACCESS = "query { myPersonalDataAccess { at role organisation what } }"


def accesses(gql, owner):
    answer = gql(ACCESS, token=owner)
    assert "errors" not in answer, answer
    return answer["data"]["myPersonalDataAccess"]


def test_the_applicant_is_for_the_owner_and_the_municipality_which_is_recorded(
        gql, platform, known):
    data = request_input(UTRECHT)
    owner = filer(data)
    requested = request(gql, data, owner)
    reference = requested["reference"]
    expected = {"caregiverName": "Anna de Vries", "caregiverPostcode": "1012 AB",
                "caregiverEmail": data["caregiver"]["email"],
                "careRecipientName": data["careRecipient"]["name"],
                "careRecipientPostcode": "1013 AA", "relationship": "parent"}

    mine = gql(WITH_APPLICANT, {"reference": reference}, token=owner)["data"]["declaration"]
    assert mine["applicant"] == expected
    created = date.fromisoformat(mine["createdAt"][:10])
    assert mine["decisionDueOn"] == (created + timedelta(weeks=8)).isoformat()
    assert mine["decidedAt"] is None
    assert accesses(gql, owner) == []   # the owner's own reads are not recorded

    # admin reads the declaration, never the applicant, and nothing is recorded
    admin = gql(WITH_APPLICANT, {"reference": reference}, token=token("admin"))
    assert admin["data"]["declaration"]["applicant"] is None
    assert accesses(gql, owner) == []
    # another municipality: not found, nothing recorded
    other = gql(WITH_APPLICANT, {"reference": reference}, token=staff(AMSTERDAM))
    assert error_codes(other) == ["NOT_FOUND"]
    assert accesses(gql, owner) == []

    seen = gql(WITH_APPLICANT, {"reference": reference}, token=staff(UTRECHT))
    assert seen["data"]["declaration"]["applicant"] == expected
    log = accesses(gql, owner)
    assert [(a["role"], a["organisation"], a["what"]) for a in log] == [
        ("municipality", UTRECHT, f"aanvraag {reference} bekeken")]

    # a list with the applicant (through a fragment) records a read per declaration in it
    listed = gql(LIST_WITH_APPLICANT, {"code": UTRECHT}, token=staff(UTRECHT))
    assert "errors" not in listed, listed
    mine_listed = [d for d in listed["data"]["declarations"] if d["reference"] == reference]
    assert mine_listed[0]["applicant"] == expected
    assert all(d["applicant"] for d in listed["data"]["declarations"])
    assert len(accesses(gql, owner)) == 2
    # the same declaration twice in one request (aliases) is one read
    twice = gql("""query($r: String!) { a: declaration(reference: $r) { applicant { caregiverName } }
        b: declaration(reference: $r) { applicant { caregiverName } } }""",
                {"r": reference}, token=staff(UTRECHT))
    assert twice["data"]["a"]["applicant"]["caregiverName"] == "Anna de Vries"
    assert len(accesses(gql, owner)) == 3
    # a list without the applicant reads nothing personal
    gql(LIST, {"code": UTRECHT, "status": "REQUESTED", "first": 100}, token=staff(UTRECHT))
    assert len(accesses(gql, owner)) == 3

    decided = decide(gql, requested)
    again = gql(WITH_APPLICANT, {"reference": reference}, token=owner)["data"]["declaration"]
    assert again["decidedAt"] and again["decidedAt"] >= again["createdAt"]
    assert decided["status"] == "ISSUED"

    # nobody else has a log to read; the log never reaches an application log
    assert error_codes(gql(ACCESS, token=staff(UTRECHT))) == ["FORBIDDEN"]
    assert error_codes(gql(ACCESS)) == ["UNAUTHENTICATED"]
    for name in ("gateway", "declaration"):
        text = platform.log_file(name).read_text()
        assert data["careRecipient"]["name"] not in text
        assert data["caregiver"]["email"] not in text
        assert f"aanvraag {reference} bekeken" not in text


def test_the_operators_see_what_waits_per_municipality(gql, platform, known):
    metrics = f"http://{platform.environ['DECLARATION_WEB_ADDRESS']}/metrics"
    request(gql, request_input(UTRECHT))
    waiting = 'mantelzorg_declarations_waiting{municipality="GM0344"}'
    assert eventually(lambda: scrape(metrics, waiting) >= 1, timeout=90)
    oldest = 'mantelzorg_declarations_oldest_waiting_age_seconds{municipality="GM0344"}'
    assert scrape(metrics, oldest) >= 0
    assert scrape(metrics, 'mantelzorg_declarations_overdue{municipality="GM0344"}') == 0
