"""The caregiver pages' session over plain HTTP: the cookie's flags and sealing, CSRF on every
form, the security headers, and no asset from another origin."""
import re

import pytest
import requests

from tests.support import eventually, random_bsn, token


def csrf_of(html):
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def staff_csrf(browser, site):
    """The CSRF token of a browser session, from the staff sign-in's second step (the first
    step, the role, is a form without one: it changes nothing)."""
    return csrf_of(browser.get(f"{site}/medewerkers/inloggen?rol=fund", timeout=10).text)


@pytest.fixture
def site(platform):
    return platform.gateway_url()


def sign_in(site, bsn):
    browser = requests.Session()
    form = browser.get(f"{site}/inloggen", timeout=10)
    answer = browser.post(f"{site}/inloggen", data={"csrf_token": csrf_of(form.text), "bsn": bsn},
                          allow_redirects=False, timeout=10)
    return browser, answer


def test_the_development_sign_in_starts_a_sealed_session(site, platform):
    bsn = random_bsn()
    browser, answer = sign_in(site, bsn)
    assert answer.status_code == 303, answer.text
    assert answer.headers["Location"] == "/verklaringen"
    cookie = answer.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie   # plain HTTP on a developer's machine
    assert bsn not in cookie
    assert 'action="/uitloggen"' in browser.get(f"{site}/uitloggen", timeout=10).text
    assert bsn not in platform.log_file("gateway").read_text()


def test_a_form_posted_without_its_csrf_token_is_refused(site):
    browser = requests.Session()
    browser.get(f"{site}/inloggen", timeout=10)   # a session, but no token sent back
    for data in ({"bsn": random_bsn()}, {"bsn": random_bsn(), "csrf_token": "guessed"}):
        answer = browser.post(f"{site}/inloggen", data=data, allow_redirects=False, timeout=10)
        assert answer.status_code == 403
        assert "verlopen" in answer.text
    # Another session's valid token does not fit this one.
    other = requests.Session()
    token_of_other = csrf_of(other.get(f"{site}/inloggen", timeout=10).text)
    answer = browser.post(f"{site}/inloggen", data={"bsn": random_bsn(),
                                                    "csrf_token": token_of_other},
                          allow_redirects=False, timeout=10)
    assert answer.status_code == 403
    assert browser.get(f"{site}/verklaringen", allow_redirects=False,
                       timeout=10).headers["Location"].startswith("/inloggen")


def test_the_cookie_is_secure_behind_https(site):
    page = requests.get(f"{site}/inloggen", headers={"X-Forwarded-Proto": "https"}, timeout=10)
    cookie = page.headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_a_tampered_cookie_is_a_new_anonymous_session(site):
    browser, _ = sign_in(site, random_bsn())
    sealed = browser.cookies["mantelzorg_sessie"]
    kid, nonce, text = sealed.split(".")
    flipped = text[:-4] + ("AAAA" if not text.endswith("AAAA") else "BBBB")
    answer = requests.get(f"{site}/verklaringen", allow_redirects=False, timeout=10,
                          cookies={"mantelzorg_sessie": f"{kid}.{nonce}.{flipped}"})
    assert answer.status_code == 303 and answer.headers["Location"].startswith("/inloggen")


def test_pages_allow_no_script_and_no_asset_of_another_origin(site):
    for path in ("/", "/steunpunten", "/inloggen", "/toegankelijkheid", "/graphql"):
        page = requests.get(f"{site}{path}", timeout=10)
        assert page.status_code == 200
        policy = page.headers["Content-Security-Policy"]
        assert "unsafe-inline" not in policy.split("script-src")[-1].split(";")[0]
        assert "frame-ancestors 'none'" in policy
        assert not re.search(r"<script(?![^>]*\ssrc=)[^>]*>", page.text), path   # none inline
        for asset in re.findall(r'(?:src|href)="([^"]+\.(?:js|css))"', page.text):
            assert asset.startswith("/static/"), asset
            served = requests.get(f"{site}{asset}", timeout=10)
            assert served.status_code == 200 and len(served.content) > 100, asset


def test_only_the_listed_assets_are_served(site):
    for path in ("/static/../pyproject.toml", "/static/%2e%2e/pyproject.toml",
                 "/static/utrecht/../../package.json", "/static/nothing.css"):
        assert requests.get(f"{site}{path}", timeout=10).status_code == 404, path


def test_a_wrong_bsn_is_never_sent_back(site):
    browser = requests.Session()
    form = browser.get(f"{site}/inloggen", timeout=10)
    answer = browser.post(f"{site}/inloggen", data={"csrf_token": csrf_of(form.text),
                                                   "bsn": "123456780"}, timeout=10)
    assert answer.status_code == 400
    assert "geen geldig BSN" in answer.text and "123456780" not in answer.text


def staff_sign_in(site, role="municipality", organisation="GM0344", name="Sam de Jong"):
    browser = requests.Session()
    csrf = staff_csrf(browser, site)
    answer = browser.post(f"{site}/medewerkers/inloggen", data={
        "csrf_token": csrf, "rol": role, "organisatie": organisation,
        "naam": name}, allow_redirects=False, timeout=10)
    return browser, answer


def sign_out_keeping_a_copy(browser, site, path):
    """Signs out with the sign-out button; answers the cookie copied before."""
    copied = browser.cookies["mantelzorg_sessie"]
    page = browser.get(f"{site}{path}", timeout=10)
    answer = browser.post(f"{site}{path}", data={"csrf_token": csrf_of(page.text)},
                          allow_redirects=False, timeout=10)
    assert answer.status_code == 303
    return copied


def test_signing_out_ends_the_caregiver_session_on_the_server(site):
    browser, _ = sign_in(site, random_bsn())
    assert browser.get(f"{site}/verklaringen", allow_redirects=False, timeout=10).status_code == 200
    copied = sign_out_keeping_a_copy(browser, site, "/uitloggen")
    replayed = requests.get(f"{site}/verklaringen", cookies={"mantelzorg_sessie": copied},
                            allow_redirects=False, timeout=10)
    assert replayed.status_code == 303 and replayed.headers["Location"].startswith("/inloggen")


@pytest.fixture(scope="module")
def utrecht_known(gql, municipalities):
    """The declaration service has learnt the municipalities (a desk shows its queue)."""
    query = 'query { declarationSettings(municipalityCode: "GM0344") { validityMonths } }'
    assert eventually(lambda: "errors" not in gql(query), timeout=60)


def test_a_staff_member_signs_in_for_an_organisation_and_out_on_the_server(site, utrecht_known):
    browser, answer = staff_sign_in(site)
    assert answer.status_code == 303, answer.text
    assert answer.headers["Location"] == "/medewerkers/aanvragen"
    queue = browser.get(f"{site}/medewerkers/aanvragen", allow_redirects=False, timeout=10)
    assert queue.status_code == 200
    # the organisation by name, looked up once at sign-in
    assert "Sam de Jong</strong> voor <strong>gemeente Utrecht" in queue.text
    assert re.search(r"max-age=900\b", answer.headers["Set-Cookie"], re.IGNORECASE)
    # a staff session is no caregiver's
    assert browser.get(f"{site}/verklaringen", allow_redirects=False,
                       timeout=10).headers["Location"].startswith("/inloggen")

    copied = sign_out_keeping_a_copy(browser, site, "/medewerkers/uitloggen")
    replayed = requests.get(f"{site}/medewerkers/aanvragen", cookies={"mantelzorg_sessie": copied},
                            allow_redirects=False, timeout=10)
    assert replayed.status_code == 303
    assert replayed.headers["Location"].startswith("/medewerkers/inloggen")


def test_signing_in_anew_ends_the_session_before(site):
    browser, _ = sign_in(site, random_bsn())
    copied = browser.cookies["mantelzorg_sessie"]
    csrf = staff_csrf(browser, site)
    answer = browser.post(f"{site}/medewerkers/inloggen", data={
        "csrf_token": csrf, "rol": "fund", "organisatie": "", "naam": "Fonds"},
        allow_redirects=False, timeout=10)
    assert answer.status_code == 303
    replayed = requests.get(f"{site}/verklaringen", cookies={"mantelzorg_sessie": copied},
                            allow_redirects=False, timeout=10)
    assert replayed.status_code == 303 and replayed.headers["Location"].startswith("/inloggen")


@pytest.mark.parametrize("data, field", [
    ({"rol": "", "organisatie": "GM0344", "naam": "Sam"}, "rol"),
    ({"rol": "municipality", "organisatie": "", "naam": "Sam"}, "organisatie"),
    ({"rol": "municipality", "organisatie": "Utrecht", "naam": "Sam"}, "organisatie"),
    ({"rol": "caregiver", "organisatie": "", "naam": "Sam"}, "rol"),
    ({"rol": "fund", "organisatie": "", "naam": ""}, "naam"),
    ({"rol": "municipality", "organisatie": "GM9999", "naam": "Sam"}, "organisatie"),
    ({"rol": "support_point", "organisatie": "", "naam": "Sam"}, "gemeente"),
    ({"rol": "support_point", "organisatie": "onbekend", "naam": "Sam"}, "gemeente")])
def test_the_staff_sign_in_names_what_is_wrong(site, utrecht_known, data, field):
    browser = requests.Session()
    csrf = staff_csrf(browser, site)
    answer = browser.post(f"{site}/medewerkers/inloggen",
                          data={"csrf_token": csrf, **data}, allow_redirects=False,
                          timeout=10)
    assert answer.status_code == 400
    assert f'id="fout-{field}"' in answer.text
    assert browser.get(f"{site}/medewerkers/aanvragen", allow_redirects=False,
                       timeout=10).status_code == 303


def test_staff_pages_of_another_role_answer_the_refusal_page(site):
    browser, answer = staff_sign_in(site, role="fund", organisation="", name="Fonds")
    assert answer.status_code == 303 and answer.headers["Location"] == "/medewerkers"
    home = browser.get(f"{site}/medewerkers", allow_redirects=False, timeout=10)
    assert home.headers["Location"] == "/medewerkers/reiskosten"
    refused = browser.get(f"{site}/medewerkers/aanvragen", allow_redirects=False, timeout=10)
    assert refused.status_code == 403 and "niet voor uw rol" in refused.text
    # only staff pages after signing in, never another site
    browser = requests.Session()
    csrf = staff_csrf(browser, site)
    answer = browser.post(f"{site}/medewerkers/inloggen", data={
        "csrf_token": csrf, "rol": "municipality", "organisatie": "GM0344",
        "naam": "Sam", "volgende": "//evil.example/phish"}, allow_redirects=False, timeout=10)
    assert answer.headers["Location"] == "/medewerkers/aanvragen"


REGISTER = """mutation($input: SupportPointInput!) { registerSupportPoint(input: $input) {
  id version } }"""
RENAME = """mutation($id: ID!, $input: SupportPointInput!, $v: Int!) {
  updateSupportPoint(id: $id, input: $input, expectedVersion: $v) { version } }"""


def test_the_sign_in_offers_the_organisations_by_name_in_steps(site, gql, utrecht_known):
    first = requests.get(f"{site}/medewerkers/inloggen", timeout=10)
    assert 'name="rol"' in first.text and 'name="organisatie"' not in first.text
    no_role = requests.get(f"{site}/medewerkers/inloggen?rol=", timeout=10)
    assert no_role.status_code == 400 and 'id="fout-rol"' in no_role.text
    municipality = requests.get(f"{site}/medewerkers/inloggen?rol=municipality", timeout=10)
    options = re.findall(r'<option value="(GM\d{4})"[^>]*>([^<]+)</option>', municipality.text)
    assert len(options) == 342 and ("GM0344", "Utrecht") in options
    listed = gql("query { municipalities { code } }")["data"]["municipalities"]
    assert [code for code, _ in options] == [m["code"] for m in listed]   # by name
    national = requests.get(f"{site}/medewerkers/inloggen?rol=fund", timeout=10)
    assert 'name="organisatie"' not in national.text and 'name="naam"' in national.text


def test_a_support_point_is_picked_by_name_and_the_name_kept_in_the_session(site, gql,
                                                                          utrecht_known):
    name = f"Steunpunt Domplein {random_bsn()[:4]}"
    point = {"name": name, "kind": "LOCAL", "municipalityCode": "GM0344",
             "address": {"street": "Domplein", "houseNumber": "4", "postcode": "3512 JC",
                         "city": "Utrecht"}, "areas": ["INFORMATION"]}
    made = gql(REGISTER, {"input": point}, token=token("admin"))
    assert "errors" not in made, made
    point_id = made["data"]["registerSupportPoint"]["id"]
    pick = requests.get(f"{site}/medewerkers/inloggen?rol=support_point", timeout=10)
    assert 'name="gemeente"' in pick.text and 'name="organisatie"' not in pick.text
    listed = requests.get(f"{site}/medewerkers/inloggen?rol=support_point&gemeente=GM0344",
                          timeout=10)
    assert re.search(rf'<option value="{point_id}"[^>]*>{name} \(Utrecht\)</option>',
                     listed.text), listed.text[-3000:]
    for unknown in ("onbekend", "0123456789abcdef01234567"):   # the list again, with why
        browser = requests.Session()
        refused = browser.post(f"{site}/medewerkers/inloggen", data={
            "csrf_token": staff_csrf(browser, site), "rol": "support_point",
            "gemeente": "GM0344", "organisatie": unknown, "naam": "Sanne"}, timeout=10)
        assert refused.status_code == 400 and 'id="fout-organisatie"' in refused.text
        assert f'<option value="{point_id}"' in refused.text and unknown not in refused.text
    browser, answer = staff_sign_in(site, "support_point", point_id, "Sanne")
    assert answer.status_code == 303, answer.text
    page = browser.get(f"{site}/medewerkers/steunpunt", timeout=10)
    assert f"Sanne</strong> voor <strong>{name}</strong>" in page.text
    # renamed after sign-in: the header keeps the name read then, no page asks again
    renamed = gql(RENAME, {"id": point_id, "v": made["data"]["registerSupportPoint"]["version"],
                           "input": {**point, "name": name + " Oost"}}, token=token("admin"))
    assert "errors" not in renamed, renamed
    header = browser.get(f"{site}/medewerkers/steunpunt", timeout=10).text.split("</header>")[0]
    assert f"voor <strong>{name}</strong>" in header
