"""Every role reaches only its own pages: every staff page for every staff role, signed in
through the development form. A page of another role answers the refusal page (403) and
shows nothing of the page; someone not signed in is sent to the staff sign-in."""
import pytest
import requests

from tests.integration.test_web_session import staff_sign_in
from tests.support import eventually, token

MUNICIPALITY = "GM0344"   # Utrecht
PAGES = {   # page -> the roles whose page it is
    "/medewerkers/aanvragen": {"municipality"},
    "/medewerkers/instellingen": {"municipality"},
    "/medewerkers/steunpunten": {"municipality"},
    "/medewerkers/reiskosten": {"fund"},
    "/medewerkers/uitbetalingen": {"fund"},
    "/medewerkers/informatietassen": {"campaign", "municipality"},
    "/medewerkers/campagnes": {"campaign", "municipality"},
    "/medewerkers/steunpunt": {"support_point"},
    "/controleren": {"partner"},
}
ROLES = ("municipality", "fund", "campaign", "support_point", "partner", "admin")
# Pages of one thing: the role is checked before the thing is looked for, so another role
# learns nothing of it; for the page's own role an unknown one is the not-found page.
ONE_THING = {
    "/medewerkers/aanvragen/MZV-2026-999999": {"municipality"},
    "/medewerkers/steunpunten/onbekend": {"municipality"},
    "/medewerkers/reiskosten/onbekend": {"fund"},
    "/medewerkers/reiskosten/0123456789abcdef01234567": {"fund"},
    "/medewerkers/uitbetalingen/onbekend/sepa.xml": {"fund"},
}
REGISTER = """mutation($input: SupportPointInput!) { registerSupportPoint(input: $input) { id } }"""


@pytest.fixture(scope="module")
def organisations(gql, municipalities):
    """The organisation each role signs in for: Utrecht (known to the declaration service,
    so its queue shows) and a support point of Utrecht."""
    query = f'query {{ declarationSettings(municipalityCode: "{MUNICIPALITY}") {{ validityMonths }} }}'
    assert eventually(lambda: "errors" not in gql(query), timeout=60)
    point = gql(REGISTER, {"input": {
        "name": "Steunpunt Toegang", "kind": "LOCAL", "municipalityCode": MUNICIPALITY,
        "address": {"street": "Neude", "houseNumber": "1", "postcode": "3512 AD",
                    "city": "Utrecht"}, "areas": ["INFORMATION"]}}, token=token("admin"))
    assert "errors" not in point, point
    return {"municipality": MUNICIPALITY,
            "support_point": point["data"]["registerSupportPoint"]["id"]}


@pytest.fixture(scope="module")
def signed_in(platform, organisations):
    site = platform.gateway_url()
    sessions = {}
    for role in ROLES:
        browser, answer = staff_sign_in(site, role, organisations.get(role, ""),
                                        f"Medewerker {role}")
        assert answer.status_code == 303, (role, answer.text)
        sessions[role] = browser
    return site, sessions


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("path", PAGES)
def test_every_role_reaches_only_its_own_pages(signed_in, path, role):
    site, sessions = signed_in
    answer = sessions[role].get(f"{site}{path}", allow_redirects=False, timeout=30)
    if role in PAGES[path]:
        assert answer.status_code == 200, (path, role, answer.text[:500])
        assert "niet voor uw rol" not in answer.text
    else:
        assert answer.status_code == 403, (path, role, answer.status_code)
        assert "Deze pagina is niet voor uw rol" in answer.text
        assert "<table" not in answer.text and "<form method=\"post\" action=\"" + path \
            not in answer.text


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("path", ONE_THING)
def test_a_page_of_one_thing_refuses_other_roles_before_it_looks(signed_in, path, role):
    site, sessions = signed_in
    answer = sessions[role].get(f"{site}{path}", allow_redirects=False, timeout=30)
    expected = 404 if role in ONE_THING[path] else 403
    assert answer.status_code == expected, (path, role, answer.status_code)


@pytest.mark.parametrize("path", PAGES)
def test_without_signing_in_every_staff_page_sends_to_the_staff_sign_in(platform, path):
    answer = requests.get(f"{platform.gateway_url()}{path}", allow_redirects=False, timeout=10)
    assert answer.status_code == 303
    assert answer.headers["Location"].startswith("/medewerkers/inloggen?volgende=")


@pytest.mark.parametrize("role", [r for r in ROLES if r != "admin"])
def test_each_role_starts_on_its_first_page(signed_in, role):
    site, sessions = signed_in
    answer = sessions[role].get(f"{site}/medewerkers", allow_redirects=False, timeout=10)
    assert answer.status_code == 303
    assert role in next(roles for page, roles in PAGES.items()
                        if page == answer.headers["Location"])
