"""The caregiver pages' session over plain HTTP: the cookie's flags and sealing, CSRF on every
form, the security headers, and no asset from another origin."""
import re

import pytest
import requests

from tests.support import eventually, log_lines, random_bsn


def csrf_of(html):
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


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
    form = browser.get(f"{site}/medewerkers/inloggen", timeout=10)
    answer = browser.post(f"{site}/medewerkers/inloggen", data={
        "csrf_token": csrf_of(form.text), "rol": role, "organisatie": organisation,
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
    assert "Sam de Jong" in queue.text and "gemeente GM0344" in queue.text
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
    form = browser.get(f"{site}/medewerkers/inloggen", timeout=10)
    answer = browser.post(f"{site}/medewerkers/inloggen", data={
        "csrf_token": csrf_of(form.text), "rol": "fund", "organisatie": "", "naam": "Fonds"},
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
    ({"rol": "fund", "organisatie": "", "naam": ""}, "naam")])
def test_the_staff_sign_in_names_what_is_wrong(site, data, field):
    browser = requests.Session()
    form = browser.get(f"{site}/medewerkers/inloggen", timeout=10)
    answer = browser.post(f"{site}/medewerkers/inloggen",
                          data={"csrf_token": csrf_of(form.text), **data}, allow_redirects=False,
                          timeout=10)
    assert answer.status_code == 400
    assert f'id="fout-{field}"' in answer.text
    assert browser.get(f"{site}/medewerkers/aanvragen", allow_redirects=False,
                       timeout=10).status_code == 303


def test_staff_pages_outside_the_role_send_to_the_sign_in(site):
    browser, answer = staff_sign_in(site, role="fund", organisation="", name="Fonds")
    assert answer.status_code == 303 and answer.headers["Location"] == "/medewerkers"
    assert "geen pagina" in browser.get(f"{site}/medewerkers", timeout=10).text
    refused = browser.get(f"{site}/medewerkers/aanvragen", allow_redirects=False, timeout=10)
    assert refused.headers["Location"].startswith("/medewerkers/inloggen")
    # only staff pages after signing in, never another site
    browser = requests.Session()
    form = browser.get(f"{site}/medewerkers/inloggen", timeout=10)
    answer = browser.post(f"{site}/medewerkers/inloggen", data={
        "csrf_token": csrf_of(form.text), "rol": "municipality", "organisatie": "GM0344",
        "naam": "Sam", "volgende": "//evil.example/phish"}, allow_redirects=False, timeout=10)
    assert answer.headers["Location"] == "/medewerkers/aanvragen"
