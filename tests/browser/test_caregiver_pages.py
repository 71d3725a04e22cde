"""A caregiver in a real browser with JavaScript switched off: finds support by postcode,
signs in, requests a declaration, sees it once the municipality issued it (through GraphQL),
claims two trips with the keyboard alone and sees the claim SUBMITTED. Every page, and every
form with its errors, is checked with axe-core and kept as a screenshot.

The request asks no municipal code: the municipality follows from the postcode of the person
cared for, and is picked by name only when that area is unknown; a check page links back to
every answer. The tests run in order and share one caregiver's browser session."""
import io
import re
import time
import uuid
from datetime import date, timedelta

import pytest
from playwright.sync_api import Error as PlaywrightError
from pypdf import PdfReader

from gateway.web.texts import MONTHS
from ops.reference import import_pc4_areas
from tests.support import random_bsn, token

UTRECHT = "GM0344"
MUNICIPALITY = token("municipality", municipality=UTRECHT)
DECISIONS = """query($code: String!) { declarations(municipalityCode: $code, status: REQUESTED,
    first: 100) { id reference } }"""
ISSUE = """mutation($id: ID!) { decideDeclaration(id: $id, decision: ISSUE) { status } }"""


@pytest.fixture(scope="module")
def support_point(gql, rpc, municipalities, reference_data):
    assert import_pc4_areas(rpc, reference_data / "pc4.csv")["rejected"] == []
    name = f"Steunpunt Mantelzorg Utrecht {uuid.uuid4().hex[:6]}"
    answer = gql("""mutation($input: SupportPointInput!) {
        registerSupportPoint(input: $input) { id } }""", {"input": {
        "name": name, "kind": "LOCAL", "municipalityCode": UTRECHT,
        "address": {"street": "Oudegracht", "houseNumber": "10", "postcode": "3511 AB",
                    "city": "Utrecht"},
        "phone": "030-123 45 67", "email": "steunpunt@example.org",
        "website": "https://example.org/mantelzorg", "areas": ["INFORMATION", "RESPITE_CARE"]}},
        token=token("admin"))
    assert "errors" not in answer, answer
    return name


@pytest.fixture(scope="module")
def caregiver(new_session):
    context = new_session()
    return {"page": context.new_page(), "context": context, "bsn": random_bsn()}


def error_summary_links_reach_their_fields(page):
    links = page.locator(".error-summary a")
    assert links.count() > 0
    for index in range(links.count()):
        target = links.nth(index).get_attribute("href")
        assert target.startswith("#veld-")
        assert page.locator(target).count() == 1, f"{target} is no field on the page"


def test_find_support_by_postcode_without_javascript(caregiver, support_point, checked):
    page = caregiver["page"]
    page.goto("/")
    checked(page, "start")
    page.get_by_role("link", name="Een steunpunt mantelzorg in de buurt zoeken").click()
    assert page.url.endswith("/steunpunten")
    checked(page, "steunpunten")

    page.get_by_label("Postcode").fill("35")
    page.get_by_role("button", name="Zoeken").click()
    assert page.locator("#fout-postcode").is_visible()
    assert page.get_by_label("Postcode").input_value() == "35"   # kept as typed
    error_summary_links_reach_their_fields(page)
    checked(page, "steunpunten met fout")

    page.get_by_label("Postcode").fill("3511 ab")
    page.get_by_role("button", name="Zoeken").click()
    result = page.locator(".result", has_text=support_point)
    assert result.count() == 1
    assert "Oudegracht 10, 3511 AB Utrecht" in result.inner_text()
    assert "030-123 45 67" in result.inner_text()
    checked(page, "steunpunten gevonden")


def test_sign_in_and_request_a_declaration(caregiver, checked, gql, municipalities):
    page = caregiver["page"]
    page.goto("/verklaringen/aanvragen")
    assert "/inloggen" in page.url   # signed out: first the sign-in
    assert "ontwikkeling" in page.locator(".development-notice").inner_text()
    checked(page, "inloggen")
    page.get_by_label("BSN").fill("123456789")
    page.get_by_role("button", name="Inloggen").click()
    assert page.locator("#fout-bsn").is_visible(), page.inner_text("main")
    assert page.get_by_label("BSN").input_value() == ""   # a BSN is never sent back
    checked(page, "inloggen met fout")
    page.get_by_label("BSN").fill(caregiver["bsn"])
    page.get_by_role("button", name="Inloggen").click()
    assert page.url.endswith("/verklaringen/aanvragen")
    checked(page, "verklaring aanvragen")

    checked(page, "verklaring aanvragen: waar woont de naaste")

    where = page.get_by_label("Postcode van de persoon voor wie u zorgt")
    where.fill("35")
    page.get_by_role("button", name="Verder").click()
    assert page.locator("#fout-naaste-postcode").is_visible()
    error_summary_links_reach_their_fields(page)
    checked(page, "verklaring aanvragen: postcode fout")

    # 1099 has no CBS area: only then is the municipality asked, by name, never by code
    where.fill("1099 AA")
    page.get_by_role("button", name="Verder").click()
    assert page.get_by_label("Gemeente", exact=True).is_visible()
    assert "GM0" not in page.inner_text("main")
    checked(page, "verklaring aanvragen: gemeente kiezen")
    page.get_by_role("button", name="Verder").click()
    assert page.locator("#fout-gemeente").is_visible()
    checked(page, "verklaring aanvragen: gemeente niet gekozen")
    page.get_by_label("Gemeente", exact=True).select_option(label="Utrecht")
    page.get_by_role("button", name="Verder").click()

    assert page.url.endswith("/verklaringen/aanvragen/gegevens")
    criteria = page.locator("section", has_text="Wat Utrecht vraagt").inner_text()
    assert "maanden" in criteria and "uur per week" in criteria
    checked(page, "verklaring aanvragen: voorwaarden en gegevens")
    page.get_by_label("Uw naam").fill("Anna de Vries")
    page.get_by_label("Uw postcode").fill("3512")   # not a full postcode
    page.get_by_role("button", name="Verder naar controleren").click()
    assert page.get_by_label("Uw naam").input_value() == "Anna de Vries"
    for field in ("postcode", "naaste-naam", "relatie", "uren", "sinds", "doelen"):
        assert page.locator(f"#fout-{field}").is_visible(), field
    error_summary_links_reach_their_fields(page)
    checked(page, "verklaring aanvragen met fouten")

    page.get_by_label("Uw postcode").fill("3512 AB")
    page.get_by_label("Naam", exact=True).fill("Jan de Vries")
    page.get_by_label("Wie is deze persoon voor u?").select_option("parent")
    page.get_by_label("Hoeveel uur per week zorgt u?").fill("12,5")
    page.get_by_label("Sinds wanneer zorgt u?").fill(
        (date.today() - timedelta(days=730)).strftime("%d-%m-%Y"))
    page.get_by_label("Parkeervergunning").check()
    page.get_by_label("Reiskostenfonds").check()
    page.get_by_role("button", name="Verder naar controleren").click()

    assert page.url.endswith("/verklaringen/aanvragen/controleren")
    answers = page.inner_text("main")
    for shown in ("1099 AA", "Utrecht", "Anna de Vries", "3512 AB", "Jan de Vries",
                  "Vader of moeder", "12,5", "Parkeervergunning"):
        assert shown in answers, shown
    checked(page, "verklaring aanvragen: controleren")

    # every answer can be changed; the others are kept
    page.get_by_role("link", name="Wijzigen uw naam").click()
    assert page.get_by_label("Uw naam").input_value() == "Anna de Vries"
    assert page.get_by_label("Reiskostenfonds").is_checked()
    page.get_by_label("Uw naam").fill("Anna van Dijk")
    page.get_by_role("button", name="Verder naar controleren").click()
    assert "Anna van Dijk" in page.inner_text("main")
    page.get_by_role("link", name="Wijzigen postcode van de persoon voor wie u zorgt").click()
    assert where.input_value() == "1099 AA"
    where.fill("3511 AB")                            # a known area: Utrecht follows from it
    page.get_by_role("button", name="Verder").click()
    page.get_by_role("button", name="Verder naar controleren").click()
    assert "3511 AB" in page.inner_text("main") and "Anna van Dijk" in page.inner_text("main")

    page.get_by_role("button", name="Aanvraag versturen").click()
    assert page.url.endswith("/verklaringen/aanvragen/verstuurd")
    confirmation = page.inner_text("main")
    reference = page.locator(".request-reference").inner_text()
    assert re.fullmatch(r"MZV-\d{4}-\d+", reference)
    assert "De gemeente Utrecht beoordeelt uw aanvraag" in confirmation
    due = date.today() + timedelta(weeks=8)
    assert page.locator(".decision-due").inner_text() == \
        f"{due.day} {MONTHS[due.month - 1]} {due.year}"
    checked(page, "verklaring aanvragen: verstuurd")
    caregiver["reference"] = reference
    requested = gql(DECISIONS, {"code": UTRECHT}, token=MUNICIPALITY)["data"]["declarations"]
    assert reference in [d["reference"] for d in requested]
    page.goto("/verklaringen/aanvragen/controleren")   # sent: nothing left to send again
    assert page.url.endswith("/verklaringen/aanvragen")


def test_the_issued_declaration_is_shown_with_its_code(caregiver, checked, gql):
    page = caregiver["page"]
    page.goto("/verklaringen")
    section = page.locator("section.declaration", has_text=caregiver["reference"])
    assert "Aangevraagd" in section.inner_text()
    checked(page, "mijn verklaringen aangevraagd")

    requested = gql(DECISIONS, {"code": UTRECHT}, token=MUNICIPALITY)["data"]["declarations"]
    declaration_id = next(d["id"] for d in requested if d["reference"] == caregiver["reference"])
    answer = gql(ISSUE, {"id": declaration_id}, token=MUNICIPALITY)
    assert answer["data"]["decideDeclaration"]["status"] == "ISSUED", answer

    page.reload()
    section = page.locator("section.declaration", has_text=caregiver["reference"])
    assert "Afgegeven" in section.inner_text()
    code = section.locator(".verification-code").inner_text().strip()
    assert code
    pdf = page.request.get(f"/verklaringen/{caregiver['reference']}.pdf")
    assert pdf.status == 200 and pdf.body().startswith(b"%PDF")
    checked(page, "mijn verklaringen afgegeven")

    section.get_by_role("button", name=f"Nieuwe controlecode voor {caregiver['reference']}").click()
    section = page.locator("section.declaration", has_text=caregiver["reference"])
    assert section.locator(".verification-code").inner_text().strip() != code
    checked(page, "nieuwe controlecode")


def tab_to(page, element_id, limit=80):
    """Moves the focus with the Tab key alone until it is on the element."""
    for _ in range(limit):
        if page.evaluate("() => document.activeElement && document.activeElement.id") \
                == element_id:
            return
        page.keyboard.press("Tab")
    raise AssertionError(f"Tab never reached #{element_id}")


def type_into(page, element_id, text):
    tab_to(page, element_id)
    page.keyboard.type(text)


def wait_for_the_answer(page, shown):
    """Waits for the page the form answers with, not for the one still shown (``shown``: its
    performance.timeOrigin, new for every document). Polls: playwright's own wait for a
    navigation never returns under eventlet."""
    for _ in range(400):
        try:
            if page.evaluate("() => document.readyState === 'complete' && "
                             "performance.timeOrigin") not in (False, shown):
                return
        except PlaywrightError:   # the page is being replaced
            pass
        page.wait_for_timeout(50)
    raise AssertionError("the form got no answer")


def press_button(page, name):
    """Tabs to the button with this text and presses Enter."""
    for _ in range(80):
        focused = page.evaluate("() => document.activeElement && document.activeElement.tagName"
                                " === 'BUTTON' ? document.activeElement.textContent.trim() : ''")
        if focused == name:
            shown = page.evaluate("() => performance.timeOrigin")
            page.keyboard.press("Enter")
            wait_for_the_answer(page, shown)
            return
        page.keyboard.press("Tab")
    raise AssertionError(f"Tab never reached the button {name}")


def type_trip(page, row, day, origin, destination, km, mode, return_trip=False):
    """Fills in one trip of the claim form, field after field, with the keyboard alone."""
    for field, text in (("datum", day), ("van", origin), ("naar", destination), ("km", km)):
        type_into(page, f"veld-rit-{row}-{field}", text)
    if return_trip:
        tab_to(page, f"veld-rit-{row}-retour")
        page.keyboard.press("Space")
    type_into(page, f"veld-rit-{row}-vervoer", mode)


def test_a_claim_with_two_trips_by_keyboard_alone(caregiver, checked):
    page = caregiver["page"]
    page.goto("/reiskosten/indienen")
    checked(page, "reiskosten declareren")
    # The declaration holds from the day it was issued: both trips are today's, one by car
    # and one by public transport (two trips, not the same one twice).
    today = date.today().strftime("%d-%m-%Y")

    page.keyboard.press("Tab")
    tab_to(page, "veld-verklaring")
    page.keyboard.type(caregiver["reference"])
    type_into(page, "veld-iban", "NL91 ABNA 0417 1643 00")
    type_into(page, "veld-rekeninghouder", "A. de Vries")
    type_trip(page, 0, today, "3512 AB", "1012 AB", "40,5", "Auto", return_trip=True)
    press_button(page, "Nog een rit toevoegen")

    # The new row has the focus, and what was typed is still there.
    assert page.evaluate("() => document.activeElement.id") == "veld-rit-1-datum"
    assert page.locator("#veld-rit-0-km").input_value() == "40,5"
    assert page.locator("#veld-rit-0-retour").is_checked()
    type_trip(page, 1, today, "3512 AB", "1012 AB", "40", "Openbaar")
    press_button(page, "Verder naar controleren")
    # Public transport needs its cost: the error is at the field and in the summary.
    assert page.locator("#fout-rit-1-kosten").is_visible()
    assert page.locator("#veld-rit-1-km").input_value() == "40"
    error_summary_links_reach_their_fields(page)
    checked(page, "reiskosten met fout")

    type_into(page, "veld-rit-1-kosten", "12,40")
    press_button(page, "Verder naar controleren")
    assert page.url.endswith("/reiskosten/indienen")
    amount = page.locator(".claim-amount").inner_text()
    assert amount == "€ 31,03"   # 2 × 40.5 km × 0.23 + 12.40, as the fund computes it
    checked(page, "reiskosten controleren")

    press_button(page, "Declaratie indienen")
    assert page.url.endswith("/reiskosten")
    row = page.locator("tr", has_text=caregiver["reference"])
    assert row.locator(".claim-status").get_attribute("data-status") == "SUBMITTED"
    assert "€ 31,03" in row.inner_text()
    checked(page, "mijn reiskosten")


def test_the_messages_tell_of_the_decision(caregiver, checked):
    page = caregiver["page"]
    page.goto("/verklaringen")
    page.get_by_role("navigation", name="Hoofdmenu").get_by_role("link", name="Mijn berichten").click()
    assert page.url.endswith("/berichten")
    message = page.locator("article.message", has_text=caregiver["reference"])
    for _ in range(50):   # the message follows the decision's event
        if message.count():
            break
        time.sleep(0.2)
        page.reload()
    assert message.get_by_role("heading").inner_text() == "Uw mantelzorgverklaring is afgegeven"
    assert "Beste Anna van Dijk," in message.inner_text()
    link = message.get_by_role("link")
    assert link.get_attribute("href").endswith("/verklaringen")
    assert page.locator("[aria-current=page]").inner_text() == "Mijn berichten"
    checked(page, "mijn berichten")


def test_a_paid_claim_brings_its_annual_statement(caregiver, checked, gql):
    own = token("caregiver", bsn=caregiver["bsn"])
    claims = gql("{ myTravelClaims { id status } }", token=own)["data"]["myTravelClaims"]
    for claim in claims:
        answer = gql("""mutation($id: ID!) { reviewTravelClaim(id: $id, approve: true) {
            status } }""", {"id": claim["id"]}, token=token("fund"))
        assert "errors" not in answer, answer
    # four eyes: one fund member proposes the payout, another releases it
    batch = gql("mutation { createPayoutBatch { id } }",
                token=token("fund", sub="fund-proposer"))["data"]["createPayoutBatch"]
    released = gql("mutation($id: ID!) { releasePayoutBatch(id: $id) { status } }",
                   {"id": batch["id"]}, token=token("fund", sub="fund-releaser"))
    assert released["data"]["releasePayoutBatch"]["status"] == "RELEASED", released
    page = caregiver["page"]
    page.goto("/reiskosten")
    year = date.today().year
    link = page.get_by_role("link", name=f"Jaaroverzicht {year} (pdf)")
    assert link.count() == 1
    checked(page, "mijn reiskosten uitbetaald")
    statement = caregiver["context"].request.get(link.get_attribute("href"))
    assert statement.ok and statement.headers["content-type"] == "application/pdf"
    text = PdfReader(io.BytesIO(statement.body())).pages[0].extract_text()
    assert f"Jaaroverzicht reiskostenfonds {year}" in text and "31,03" in text
def test_a_page_that_does_not_exist_leads_back_to_the_start(caregiver, checked):
    page = caregiver["page"]
    answer = page.goto("/verklaringen/MZ-2000-1.pdf")    # no declaration of hers
    assert answer.status == 404 and "Pagina niet gevonden" in page.inner_text("main")
    assert page.get_by_role("link", name="Naar de startpagina", exact=True) \
        .get_attribute("href") == "/"
    checked(page, "pagina niet gevonden")


def test_sign_out(caregiver, checked):
    page = caregiver["page"]
    page.goto("/toegankelijkheid")
    checked(page, "toegankelijkheid")
    page.get_by_role("button", name="Uitloggen").click()
    assert page.get_by_role("status").inner_text().strip() == "U bent uitgelogd."
    page.goto("/reiskosten")
    assert "/inloggen" in page.url


def test_graphiql_runs_on_scripts_from_the_gateway(browser, platform, checked):
    context = browser.new_context(base_url=platform.gateway_url())
    page = context.new_page()
    refused = []
    page.on("console", lambda message: refused.append(message.text)
            if "Content Security Policy" in message.text else None)
    foreign = []
    page.on("request", lambda request: foreign.append(request.url)
            if not request.url.startswith(platform.gateway_url()) else None)
    page.goto("/graphql")
    page.wait_for_selector(".graphiql-container", timeout=20_000)
    page.screenshot(path=str(checked.artifacts / "graphiql.png"))
    context.close()
    assert foreign == [] and refused == []
