"""The municipality's desk in a real browser with JavaScript switched off: an employee of
Amersfoort signs in, finds a caregiver's request in the queue (the caregiver is told that
nobody has read their data yet), opens it (the caregiver then sees that read on their own
pages), tries to reject it without a reason (the error is shown, nothing changes), issues it
with the keyboard alone and downloads the decision letter, which the caregiver downloads too;
an employee of De Bilt opening the same request gets the not-found page and nothing is
recorded. A queue of more than one page shows the oldest requests first, and its next page
goes on where the first ended. Every page and every error state is checked with axe-core and
kept as a screenshot.

The tests run in order and share the employee's and the caregiver's browser sessions."""
import re
import uuid
from datetime import date, timedelta

import pytest

from tests.browser.test_caregiver_pages import press_button, tab_to
from tests.support import eventually, pdf_text, personal_email, random_bsn, token

AMERSFOORT, DE_BILT = "GM0307", "GM0310"
# This test's order: a number of bags no other test orders, and not the end of a larger one.
THIS_ORDER = re.compile(r"(?<![\d.])173 tassen")
HILVERSUM = "GM0402"   # no other test files requests there: its queue holds only this file's
REQUEST = """mutation($input: DeclarationRequestInput!) {
    requestDeclaration(input: $input) { id reference status } }"""
STATUS = "query($r: String!) { declaration(reference: $r) { status decisionReason } }"
ACCESS = "query { myPersonalDataAccess { role organisation what } }"


@pytest.fixture(scope="module")
def desk(new_session, gql, municipalities):
    query = 'query($m: String!) { declarationSettings(municipalityCode: $m) { validityMonths } }'
    for code in (AMERSFOORT, DE_BILT):
        assert eventually(lambda: "errors" not in gql(query, {"m": code}), timeout=60)
    filed = file_request(gql, AMERSFOORT)
    employee, caregiver, neighbour = new_session(), new_session(), new_session()
    return {"employee": employee.new_page(), "caregiver": caregiver.new_page(),
           "neighbour": neighbour.new_page(), "employee_context": employee,
           "caregiver_context": caregiver, **filed}


def file_request(gql, municipality):
    """A new caregiver's request to ``municipality``: its reference, the caregiver's BSN and
    token, and the care recipient's name."""
    bsn = random_bsn()
    recipient = f"Jan {uuid.uuid4().hex[:6]}"
    owner = token("caregiver", f"desk-{uuid.uuid4().hex[:8]}", bsn=bsn)
    filed = gql(REQUEST, {"input": {
        "municipalityCode": municipality,
        "caregiver": {"bsn": bsn, "name": "Anna de Vries", "postcode": "3811 AA",
                      "email": personal_email()},
        "careRecipient": {"name": recipient, "postcode": "3812 AB", "relationship": "parent"},
        "hoursPerWeek": "6", "careSince": (date.today() - timedelta(days=30)).isoformat(),
        "purposes": ["PARKING_PERMIT"]}}, token=owner)
    assert "errors" not in filed, filed
    return {"bsn": bsn, "owner": owner, "recipient": recipient,
            "reference": filed["data"]["requestDeclaration"]["reference"]}


def accesses(gql, desk):
    answer = gql(ACCESS, token=desk["owner"])
    assert "errors" not in answer, answer
    return answer["data"]["myPersonalDataAccess"]


def sign_in_as_staff(page, checked, organisation, name, screenshots=False):
    page.goto("/medewerkers/aanvragen")
    assert "/medewerkers/inloggen" in page.url   # signed out: first the sign-in
    if screenshots:
        checked(page, "medewerkers inloggen")
        page.get_by_role("button", name="Verder").click()
        assert page.locator("#fout-rol").is_visible()
        checked(page, "medewerkers inloggen zonder rol")
    page.get_by_label("Rol").select_option("municipality")
    page.get_by_role("button", name="Verder").click()
    # the second step: every municipality by name, its CBS code the value
    options = page.locator("#veld-organisatie option")
    assert options.count() == 343   # 342 municipalities and "Kies uw gemeente"
    assert page.locator(f"#veld-organisatie option[value='{AMERSFOORT}']").inner_text() \
        == "Amersfoort"
    if screenshots:
        checked(page, "medewerkers inloggen gemeente kiezen")
        page.get_by_role("button", name="Inloggen").click()
        for field in ("organisatie", "naam"):
            assert page.locator(f"#fout-{field}").is_visible(), field
        checked(page, "medewerkers inloggen met fouten")
    page.get_by_label("Organisatie").select_option(organisation)
    page.get_by_label("Naam").fill(name)
    page.get_by_role("button", name="Inloggen").click()
    assert page.url.endswith("/medewerkers/aanvragen"), page.url


def test_the_employee_finds_the_request_in_the_queue(desk, checked, gql):
    page = desk["employee"]
    sign_in_as_staff(page, checked, AMERSFOORT, "Sam de Jong", screenshots=True)
    # by name, looked up once at sign-in
    assert "Ingelogd als Sam de Jong voor gemeente Amersfoort" in page.inner_text("header")
    checked(page, "aanvragen")
    link = page.get_by_role("link", name=desk["reference"])
    assert link.count() == 1
    row = page.locator("tr", has=link).inner_text()
    assert "0 dagen" in row and "Beslissen vóór" in page.inner_text("thead")
    assert (date.today() + timedelta(weeks=8)).strftime("%Y") in row
    assert accesses(gql, desk) == []   # the queue shows nobody's personal data

    page.get_by_label("Status").select_option("ISSUED")
    page.get_by_role("button", name="Tonen").click()
    assert "status=ISSUED" in page.url
    checked(page, "aanvragen afgegeven")


def test_the_caregiver_sees_that_nobody_has_read_their_data_yet(desk, checked, gql):
    assert accesses(gql, desk) == []
    page = desk["caregiver"]
    page.goto("/inloggen")
    page.get_by_label("BSN").fill(desk["bsn"])
    page.get_by_role("button", name="Inloggen").click()
    page.get_by_role("link", name="Wie heeft uw gegevens bekeken").click()
    main = page.inner_text("main")
    assert "Niemand anders heeft uw gegevens bekeken." in main
    assert page.locator("main table").count() == 0
    checked(page, "wie heeft uw gegevens bekeken nog niemand")


def test_opening_the_request_shows_the_applicant_and_the_caregiver_sees_it(desk, checked, gql):
    page = desk["employee"]
    page.goto("/medewerkers/aanvragen")
    page.get_by_role("link", name=desk["reference"]).click()
    assert page.url.endswith(f"/medewerkers/aanvragen/{desk['reference']}")
    main = page.inner_text("main")
    assert "Anna de Vries" in main and desk["recipient"] in main and "3812 AB" in main
    assert "minder uren per week" in main and "niet lang genoeg" in main
    assert "Ingelogd als Sam de Jong voor gemeente Amersfoort" in page.inner_text("header")
    checked(page, "aanvraag")
    assert [(a["organisation"], a["what"]) for a in accesses(gql, desk)] == [
        (AMERSFOORT, f"aanvraag {desk['reference']} bekeken")]

    caregiver = desk["caregiver"]   # signed in since the test before
    caregiver.goto("/verklaringen")
    caregiver.get_by_role("link", name="Wie heeft uw gegevens bekeken").click()
    shown = caregiver.inner_text("main")
    assert "Gemeente Amersfoort" in shown and f"Aanvraag {desk['reference']} bekeken" in shown
    checked(caregiver, "wie heeft uw gegevens bekeken")


def test_rejecting_without_a_reason_changes_nothing(desk, checked, gql):
    page = desk["employee"]
    page.goto(f"/medewerkers/aanvragen/{desk['reference']}")
    page.get_by_role("button", name="Afwijzen").click()
    assert page.locator("#fout-reden").is_visible()
    assert page.title().startswith("Fout:")
    assert page.locator(".error-summary a[href='#veld-reden']").count() == 1
    checked(page, "afwijzen zonder reden")
    assert gql(STATUS, {"r": desk["reference"]}, token=desk["owner"])["data"]["declaration"][
        "status"] == "REQUESTED"


def test_another_municipality_gets_the_not_found_page_and_nothing_is_recorded(desk, checked,
                                                                             gql):
    before = len(accesses(gql, desk))
    page = desk["neighbour"]
    sign_in_as_staff(page, checked, DE_BILT, "Kim Bakker")
    assert page.get_by_role("link", name=desk["reference"]).count() == 0
    answer = page.goto(f"/medewerkers/aanvragen/{desk['reference']}")
    assert answer.status == 404 and "Pagina niet gevonden" in page.inner_text("main")
    assert "Anna de Vries" not in page.content()
    checked(page, "aanvraag van een andere gemeente")
    answer = page.goto(f"/medewerkers/aanvragen/{desk['reference']}/besluit.pdf")
    assert answer.status == 404
    assert len(accesses(gql, desk)) == before


def test_the_keyboard_alone_issues_the_declaration(desk, checked, gql):
    page = desk["employee"]
    page.goto(f"/medewerkers/aanvragen/{desk['reference']}")
    page.keyboard.press("Tab")
    tab_to(page, "veld-reden")
    page.keyboard.type("Zorg is aangetoond met een verklaring van de huisarts.")
    press_button(page, "Verklaring afgeven")
    assert page.url.endswith(f"/medewerkers/aanvragen/{desk['reference']}")
    assert "is afgegeven" in page.get_by_role("status").inner_text()
    assert gql(STATUS, {"r": desk["reference"]}, token=desk["owner"])["data"]["declaration"][
        "status"] == "ISSUED"
    checked(page, "verklaring afgegeven")


def test_the_decision_letter_for_the_municipality_and_the_caregiver(desk, checked):
    for who in ("employee", "caregiver"):
        page = desk[who]
        path = (f"/medewerkers/aanvragen/{desk['reference']}/besluit.pdf" if who == "employee"
                else f"/verklaringen/{desk['reference']}/besluit.pdf")
        if who == "caregiver":
            page.goto("/verklaringen")
            assert page.get_by_role("link", name=f"Besluitbrief van de gemeente over "
                                                 f"{desk['reference']} (pdf)").count() == 1
            checked(page, "mijn verklaringen met besluitbrief")
        letter = desk[f"{who}_context"].request.get(path)
        assert letter.status == 200 and letter.headers["content-type"] == "application/pdf"
        text = " ".join(pdf_text(letter.body()).split())
        assert "Gemeente Amersfoort" in text and desk["reference"] in text
        assert "u krijgt de mantelzorgverklaring" in text and "Parkeervergunning" in text
        assert "binnen zes weken" in text and "bezwaar" in text
        assert "Anna de Vries" in text and desk["bsn"] not in text


def test_a_new_code_and_revoking_with_a_reason(desk, checked, gql):
    page = desk["employee"]
    page.goto(f"/medewerkers/aanvragen/{desk['reference']}")
    before = page.locator(".verification-code").inner_text()
    page.get_by_role("button", name="Nieuwe controlecode maken").click()
    assert "nieuwe controlecode" in page.get_by_role("status").inner_text()
    assert page.locator(".verification-code").inner_text() != before

    page.get_by_role("button", name="Verklaring intrekken").click()
    assert page.locator("#fout-reden").is_visible()
    checked(page, "intrekken zonder reden")
    assert gql(STATUS, {"r": desk["reference"]}, token=desk["owner"])["data"]["declaration"][
        "status"] == "ISSUED"
    page.get_by_label("Reden").fill("De zorg is gestopt.")
    page.get_by_role("button", name="Verklaring intrekken").click()
    assert "is ingetrokken" in page.get_by_role("status").inner_text()
    assert gql(STATUS, {"r": desk["reference"]}, token=desk["owner"])["data"]["declaration"] \
        == {"status": "REVOKED", "decisionReason": "De zorg is gestopt."}
    assert "Ingetrokken door gemeente. Reden: De zorg is gestopt." in page.inner_text(".history")


def test_the_municipality_chooses_its_own_criteria(desk, checked, gql):
    page = desk["employee"]
    page.get_by_role("link", name="Instellingen").click()
    assert page.url.endswith("/medewerkers/instellingen")
    assert page.get_by_label("Zorgt minimaal (uren per week)").input_value() == "8"
    checked(page, "instellingen")
    page.get_by_label("Zorgt minimaal (maanden)").fill("drie")
    page.get_by_label("Zorgt minimaal (uren per week)").fill("10,5")
    page.get_by_role("button", name="Opslaan").click()
    assert page.locator("#fout-maanden").is_visible()
    assert page.get_by_label("Zorgt minimaal (uren per week)").input_value() == "10,5"
    checked(page, "instellingen met fout")
    settings = 'query { declarationSettings(municipalityCode: "GM0307") { minHoursPerWeek minCareMonths } }'
    assert gql(settings)["data"]["declarationSettings"]["minHoursPerWeek"] == "8"
    page.get_by_label("Zorgt minimaal (maanden)").fill("6")
    page.get_by_role("button", name="Opslaan").click()
    assert "opgeslagen" in page.get_by_role("status").inner_text()
    assert gql(settings)["data"]["declarationSettings"] == {"minHoursPerWeek": "10.5",
                                                            "minCareMonths": 6}


def test_the_municipality_opts_out_of_a_regional_campaign(desk, checked, gql):
    created = gql("""mutation($input: CampaignInput!) { createCampaign(input: $input) { id } }""",
                  {"input": {"name": f"Mantelzorg Eemland {uuid.uuid4().hex[:4]}",
                             "hashtag": "#deeljezorg", "scope": "REGIONAL",
                             "municipalityCodes": [AMERSFOORT, DE_BILT],
                             "startsOn": date.today().isoformat(),
                             "endsOn": (date.today() + timedelta(days=30)).isoformat(),
                             "materials": ["poster"]}}, token=token("campaign"))
    assert "errors" not in created, created
    page = desk["employee"]
    page.get_by_role("link", name="Campagnes").click()
    section = page.locator("section", has_text="Mantelzorg Eemland")
    assert "Doet mee" in section.inner_text()
    checked(page, "campagnes")
    section.get_by_role("button").click()
    assert "niet mee aan Mantelzorg Eemland" in page.get_by_role("status").inner_text()
    assert "Doet niet mee" in page.locator("section", has_text="Mantelzorg Eemland").inner_text()
    checked(page, "campagnes afgemeld")


UPDATE_POINT = """mutation($id: ID!, $input: SupportPointInput!, $v: Int!) {
    updateSupportPoint(id: $id, input: $input, expectedVersion: $v) { version } }"""


def test_a_support_point_registered_changed_meanwhile_and_closed(desk, checked, gql, pc4_areas):
    page = desk["employee"]
    page.get_by_role("link", name="Steunpunten").click()
    checked(page, "steunpunten van de gemeente")
    page.get_by_role("link", name="Een steunpunt registreren").click()
    page.get_by_role("button", name="Registreren").click()
    for field in ("naam", "soort", "straat", "postcode", "hulp"):
        assert page.locator(f"#fout-{field}").is_visible(), field
    checked(page, "steunpunt registreren met fouten")
    name = f"Mantelzorgpunt Eemland {uuid.uuid4().hex[:4]}"
    page.get_by_label("Naam", exact=True).fill(name)
    page.get_by_label("Soort steunpunt").select_option("LOCAL")
    page.get_by_label("Straat").fill("Stadsring")
    page.get_by_label("Huisnummer").fill("12")
    page.get_by_label("Postcode").fill("3811 AA")
    page.get_by_label("Plaats").fill("Amersfoort")
    page.get_by_label("Informatie").check()
    page.get_by_role("button", name="Registreren").click()
    assert "is geregistreerd" in page.get_by_role("status").inner_text()

    page.get_by_role("link", name=name).click()
    point_id = page.url.rsplit("/", 1)[1]
    checked(page, "steunpunt wijzigen")
    # a colleague changes it while this form is open
    current = gql("query($id: ID!) { supportPoint(id: $id) { version } }", {"id": point_id})
    changed = gql(UPDATE_POINT, {"id": point_id, "v": current["data"]["supportPoint"]["version"],
                                 "input": {"name": name, "kind": "LOCAL",
                                           "municipalityCode": AMERSFOORT,
                                           "address": {"street": "Stadsring", "houseNumber": "14",
                                                       "postcode": "3811 AA", "city": "Amersfoort"},
                                           "phone": "033-123 45 67", "areas": ["INFORMATION"]}},
                  token=token("municipality", municipality=AMERSFOORT))
    assert "errors" not in changed, changed
    page.get_by_label("Telefoon").fill("033-765 43 21")
    page.get_by_role("button", name="Wijzigingen opslaan").click()
    summary = page.locator(".error-summary").inner_text()
    assert "Iemand anders heeft dit steunpunt gewijzigd" in summary
    assert "Stadsring 14" in page.locator(".stored-version").inner_text()
    assert page.get_by_label("Telefoon").input_value() == "033-765 43 21"
    checked(page, "steunpunt intussen gewijzigd")
    page.get_by_label("Huisnummer").fill("14")
    page.get_by_role("button", name="Wijzigingen opslaan").click()
    assert "is gewijzigd" in page.get_by_role("status").inner_text()
    saved = gql("query($id: ID!) { supportPoint(id: $id) { phone address { houseNumber } } }",
                {"id": point_id})["data"]["supportPoint"]
    assert saved == {"phone": "033-765 43 21", "address": {"houseNumber": "14"}}

    page.goto(f"/medewerkers/steunpunten/{point_id}")
    page.get_by_role("button", name="Steunpunt opheffen").click()
    assert page.locator("#fout-reden").is_visible()
    checked(page, "steunpunt opheffen zonder reden")
    page.get_by_label("Reden").fill("Samengegaan met het steunpunt in Leusden")
    page.get_by_role("button", name="Steunpunt opheffen").click()
    assert "is opgeheven" in page.get_by_role("status").inner_text()
    # another municipality's point is not found
    neighbour = desk["neighbour"]
    assert neighbour.goto(f"/medewerkers/steunpunten/{point_id}").status == 404


def test_information_bags_ordered_and_cancelled(desk, checked, gql):
    page = desk["employee"]
    page.get_by_role("link", name="Informatietassen").click()
    checked(page, "informatietassen")
    page.get_by_label("Aantal tassen").fill("veel")
    page.get_by_role("button", name="Bestellen").click()
    assert page.locator("#fout-aantal").is_visible()
    checked(page, "informatietassen met fout")
    page.get_by_label("Aantal tassen").fill("173")
    page.get_by_label("Eigen tekst in de bijlage").fill("Mantelzorgloket Amersfoort: 033-469 40 00")
    page.get_by_role("button", name="Bestellen").click()
    assert "bestelling is ontvangen" in page.get_by_role("status").inner_text()
    order = page.locator("section", has_text=THIS_ORDER)
    assert "Besteld, wacht op verdeling" in order.inner_text()
    order.get_by_role("button").click()
    assert "waarom u die annuleert" in page.locator(".error-summary").inner_text()
    checked(page, "informatietassen annuleren zonder reden")
    order = page.locator("section", has_text=THIS_ORDER)
    order.get_by_label("Reden om te annuleren").fill("Te veel besteld")
    order.get_by_role("button").click()
    assert "geannuleerd" in page.get_by_role("status").inner_text()
    assert "Geannuleerd" in page.locator("section", has_text=THIS_ORDER).inner_text()
    orders = gql('query { bagOrders(municipalityCode: "GM0307") { status quantityRequested } }',
                 token=token("campaign"))["data"]["bagOrders"]
    assert {"status": "CANCELLED", "quantityRequested": 173} in orders


def test_signing_out_of_the_desk(desk, checked):
    page = desk["employee"]
    page.goto("/medewerkers/aanvragen")
    page.get_by_role("button", name="Uitloggen").click()
    assert "/medewerkers/inloggen" in page.url
    assert "U bent uitgelogd" in page.get_by_role("status").inner_text()
    checked(page, "medewerkers uitgelogd")
    page.goto("/medewerkers/aanvragen")
    assert "/medewerkers/inloggen" in page.url


def queue_references(page):
    return [link.inner_text() for link in page.locator("tbody a").all()]


def test_the_queue_shows_the_oldest_first_a_page_at_a_time(new_session, gql, checked):
    query = 'query($m: String!) { declarationSettings(municipalityCode: $m) { validityMonths } }'
    assert eventually(lambda: "errors" not in gql(query, {"m": HILVERSUM}), timeout=60)
    # more than a page (of 20) of waiting requests, filed one after another
    filed = [file_request(gql, HILVERSUM)["reference"] for _ in range(23)]
    page = new_session().new_page()
    sign_in_as_staff(page, checked, HILVERSUM, "Hanna Hilversum")
    first = queue_references(page)
    assert first == filed[:20]   # the oldest first, a full page
    pages = page.get_by_role("navigation", name="Pagina's")
    assert pages.get_by_role("link", name="Eerste pagina").count() == 0
    pages.get_by_role("link", name="Volgende pagina").click()
    assert f"na={filed[19]}" in page.url
    assert page.inner_text("caption") == "Wachten op besluit, vervolg"
    second = queue_references(page)
    assert second == filed[20:]   # where the first ended: nothing repeated, nothing lost
    assert pages.get_by_role("link", name="Volgende pagina").count() == 0
    checked(page, "aanvragen vervolg")
    pages.get_by_role("link", name="Eerste pagina").click()
    assert queue_references(page) == first
