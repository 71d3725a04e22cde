"""The partners' check page counts its failed checks toward the same limit as the API's: a
partner who fails ten times on the page is refused on the API with the same identity (and
on the page), while another partner is not; the answer names nothing personal."""
import uuid

import pytest
import requests

from gateway.web.staff import development_subject
from tests.integration.test_web_session import csrf_of, staff_csrf
from tests.support import Caregiver, eventually, token

CODE = "query($r: String!) { declaration(reference: $r) { verificationCode } }"
CHECK = """query($r: String!, $c: String!) {
  checkDeclaration(reference: $r, verificationCode: $c, purpose: TRAVEL_COST_FUND) { valid } }"""
MAX_FAILURES = 10   # the declaration service's default CHECK_MAX_FAILURES


@pytest.fixture(scope="module")
def issued(gql, municipalities):
    query = 'query { declarationSettings(municipalityCode: "GM0363") { validityMonths } }'
    assert eventually(lambda: "errors" not in gql(query), timeout=60)
    caregiver = Caregiver(gql)
    code = gql(CODE, {"r": caregiver.reference}, token=caregiver.token)["data"]["declaration"][
        "verificationCode"]
    return caregiver.reference, code


def partner_page(site, name):
    browser = requests.Session()
    answer = browser.post(f"{site}/medewerkers/inloggen", data={
        "csrf_token": staff_csrf(browser, site), "rol": "partner", "organisatie": "", "naam": name},
        allow_redirects=False, timeout=10)
    assert answer.status_code == 303

    def check(reference, code):
        page = browser.get(f"{site}/controleren", timeout=10)
        return browser.post(f"{site}/controleren", data={
            "csrf_token": csrf_of(page.text), "referentie": reference, "controlecode": code,
            "doel": "TRAVEL_COST_FUND"}, timeout=30)
    return check


def test_failed_checks_on_the_page_count_toward_the_apis_limit(platform, gql, issued):
    reference, code = issued
    name = f"Pim {uuid.uuid4().hex[:6]}"
    check = partner_page(platform.gateway_url(), name)
    first = check(reference, code)
    assert first.status_code == 200 and "Uitkomst: geldig" in first.text
    assert "Anna de Vries" not in first.text and code not in first.text
    for _ in range(MAX_FAILURES):
        wrong = check(reference, "FOUT-0000")
        assert "Uitkomst: niet geldig" in wrong.text

    same = token("partner", sub=development_subject("partner", "", name))
    assert gql(CHECK, {"r": reference, "c": code}, token=same)["data"][
        "checkDeclaration"]["valid"] is False
    assert "Uitkomst: niet geldig" in check(reference, code).text
    other = token("partner", sub=f"partner-{uuid.uuid4().hex[:8]}")
    assert gql(CHECK, {"r": reference, "c": code}, token=other)["data"][
        "checkDeclaration"]["valid"] is True
