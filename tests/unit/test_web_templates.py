"""The pages whose operations come with other issues render from the contract's field names
(the browser tests run them end to end once the gateway offers those operations)."""
from gateway.web.app import templates
from gateway.web.forms import Form

DECLARATION = {"id": "d1", "reference": "MZV-2026-000123", "status": "ISSUED",
               "municipalityCode": "GM0344", "purposes": ["PARKING_PERMIT", "TRAVEL_COST_FUND"],
               "hoursPerWeek": "12.5", "careSince": "2024-03-01", "validFrom": "2026-03-01",
               "validUntil": "2027-02-28", "decisionReason": None, "verificationCode": "K7PQ-2M9X",
               "createdAt": "2026-02-20T10:00:00+00:00"}
TRIP = {"date": "2026-03-15", "fromPostcode": "3512 AB", "toPostcode": "1012 AB",
        "distanceKm": "40.5", "returnTrip": True, "mode": "CAR", "amountEuros": "18.63"}
CLAIM = {"id": "c1", "status": "ON_HOLD", "declarationReference": "MZV-2026-000123",
         "amountEuros": "1234.5", "ibanMasked": "NL** **** **** **43 00",
         "reason": "De afstand wordt nagevraagd.", "submittedAt": "2026-03-20T09:00:00+00:00",
         "trips": [TRIP]}
COMMON = {"csrf_token": "t", "csrf_field": "csrf_token", "signed_in": True, "path": "/",
          "flash": None, "errors": {}}


def render(name, **values):
    return templates.get_template(name).render(**{**COMMON, **values})


def test_my_declarations_show_status_validity_code_pdf_and_renewal():
    html = render("declarations.html", declarations=[DECLARATION])
    assert "Afgegeven" in html and "1 maart 2026" in html and "28 februari 2027" in html
    assert "K7PQ-2M9X" in html and 'href="/verklaringen/MZV-2026-000123.pdf"' in html
    assert 'action="/verklaringen/nieuwe-code"' in html and 'value="d1"' in html


def test_my_travel_claims_show_status_amount_and_reason():
    html = render("travel_claims.html", claims=[CLAIM])
    assert "€ 1.234,50" in html and "nagevraagd" in html and 'data-status="ON_HOLD"' in html


def test_the_claim_form_keeps_rows_and_the_check_page_carries_them_on():
    rows = [{"datum": "15-03-2026", "van": "3512 AB", "naar": "1012 AB", "km": "40,5",
             "retour": "ja", "vervoer": "CAR", "kosten": ""}]
    form = Form({"verklaring": "MZV-2026-000123", "iban": "NL91ABNA0417164300",
                 "rekeninghouder": "A. de Vries",
                 **{f"rit-0-{name}": value for name, value in rows[0].items()}})
    html = render("claim_form.html", form=form, rows=rows, declarations=[DECLARATION],
                  focus_row=None)
    assert 'name="ritten" value="1"' in html and 'value="40,5"' in html and "checked" in html
    claim = {"declarationReference": "MZV-2026-000123", "iban": "NL91ABNA0417164300",
             "accountHolder": "A. de Vries", "trips": []}
    html = render("claim_check.html", form=form, rows=rows, claim=claim,
                  preview={"amountEuros": "18.63", "reason": None, "trips": [TRIP]})
    assert "€ 18,63" in html and 'name="rit-0-km" value="40,5"' in html
    assert 'value="bevestigen"' in html


def test_the_desk_queue_says_in_words_which_request_is_overdue():
    from datetime import date, timedelta

    from gateway.web.staff import waiting_words

    today = date(2026, 12, 7)
    late = {"id": "d2", "reference": "MZV-2026-000007", "status": "REQUESTED",
            "createdAt": "2026-10-01T09:00:00+00:00", "decisionDueOn": "2026-11-26",
            "decidedAt": None}
    soon = {**late, "reference": "MZV-2026-000042", "createdAt": "2026-10-12T09:00:00+00:00",
            "decisionDueOn": (today + timedelta(days=3)).isoformat()}
    rows = [{**d, "waiting": waiting_words(d, today)} for d in (late, soon)]
    assert rows[0]["waiting"] == {"days": 67, "due": date(2026, 11, 26), "overdue": True,
                                  "days_late": 11, "days_left": -11}
    assert not rows[1]["waiting"]["overdue"]
    html = render("staff_queue.html", rows=rows, shown="REQUESTED", after=None,
                  next_after="MZV-2026-000042", overdue=1, path="/medewerkers/aanvragen",
                  staff={"role": "municipality", "municipality": "GM0307", "name": "Sam"})
    assert "Te laat: 11 dagen over de termijn" in html and 'class="utrecht-table__row overdue"' in html
    assert "1 aanvraag is te laat" in html and "Nog 3 dagen" in html
    assert "na=MZV-2026-000042" in html and "Ingelogd als <strong>Sam</strong>" in html
