"""The caregiver pages' session over plain HTTP: the cookie's flags and sealing, CSRF on every
form, the security headers, and no asset from another origin."""
import re

import pytest
import requests

from tests.support import log_lines, random_bsn


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
    assert "Uitloggen" in browser.get(f"{site}/uitloggen", timeout=10).text
    assert bsn not in platform.log_file("gateway").read_text()
