"""Information bags and campaigns, one page per address with the role deciding what it
shows: the campaign team runs the stock, the print runs, the allocation rounds, shipping and
delivery, and the campaigns; a municipality orders bags for itself or one of its support
points, sees and cancels its orders, and sees the campaigns that include it, opting out of
a regional one."""
from gateway.web.app import STAFF_PAGES, OperationRefused
from gateway.web.desks import operations
from gateway.web.forms import Form
from gateway.web.texts import BAG_ORDER_STATUS_NAMES

TEAM, MUNICIPALITY = "campaign", "municipality"
BAGS = STAFF_PAGES + "/informatietassen"
CAMPAIGNS = STAFF_PAGES + "/campagnes"
MAX_BAGS = 100_000


def _orders(page, code=None):
    return page.graphql(operations.BAG_ORDERS, {"code": code})["bagOrders"]


def _bags_page(page, form=None, round_=None, status=200):
    form = form or Form({})
    role = page.session["role"]
    shown = page.request.args.get("status") or ""
    if shown not in BAG_ORDER_STATUS_NAMES:
        shown = ""
    values = {"form": form, "errors": form.errors, "round": round_, "shown": shown}
    if role == TEAM:
        municipality = (page.request.args.get("gemeente") or "").strip().upper()
        orders = _orders(page, municipality or None)
        values.update(stock=page.graphql(operations.BAG_STOCK)["bagStock"],
                      municipality=municipality)
    else:
        code = page.session["municipality"]
        orders = _orders(page, code)
        values["points"] = page.graphql(operations.MUNICIPALITY_POINTS,
                                        {"code": code})["supportPoints"]["items"]
    values["orders"] = [o for o in orders if not shown or o["status"] == shown]
    template = "desk_bags_team.html" if role == TEAM else "desk_bags_municipality.html"
    return page.render(template, status=status, share_words=share_words, **values)


def share_words(share):
    """One order's share of a round in a Dutch sentence; the service's explanation of the
    arithmetic follows it."""
    order = share["order"]
    still = order["quantityRequested"] - order["quantityAllocated"]
    got = share["allocatedNow"]
    words = (f"Deze bestelling krijgt nu {got} {'tas' if got == 1 else 'tassen'}"
             if got else "Deze bestelling krijgt in deze ronde geen tassen")
    return words + (f" en wacht nog op {still}." if still else " en is nu compleet.")


def bags(page):
    page.require_staff(TEAM, MUNICIPALITY)
    if page.request.method == "GET":
        return _bags_page(page)
    action = page.form.get("actie")
    handler = (TEAM_ACTIONS if page.session["role"] == TEAM else MUNICIPALITY_ACTIONS).get(action)
    if handler is None:
        form = Form({})
        form.fail("", "Kies wat u wilt doen.")
        return _bags_page(page, form, status=400)
    return handler(page)


def _quantity(form, name, what):
    text = form.required(name, what)
    if text and (not text.isdigit() or not 1 <= int(text) <= MAX_BAGS):
        form.fail(name, f"Vul {what} in als een heel getal van 1 tot en met 100.000.")
    return int(text) if not form.errors.get(name) and text else None


def _print_run(page):
    form = Form({"aantal": page.form.get("aantal")})
    quantity = _quantity(form, "aantal", "het aantal gedrukte tassen")
    if form.errors:
        return _bags_page(page, form, status=400)
    page.graphql(operations.ADD_PRINT_RUN, {"quantity": quantity})
    page.session.flash(f"De drukgang van {quantity:,} tassen is toegevoegd aan de voorraad."
                       .replace(",", "."))
    return page.redirect(BAGS)


def _allocate(page):
    round_ = page.graphql(operations.RUN_ALLOCATION)["runBagAllocation"]
    return _bags_page(page, round_=round_)


def _order_step(operation, done):
    def step(page):
        try:
            page.graphql(operation, {"id": page.form.get("bestelling", "")})
        except OperationRefused as refusal:
            form = Form({})
            form.fail("", "Dit lukte niet: de bestelling is intussen veranderd. Hieronder ziet "
                          "u hoe het er nu mee staat." if "CONFLICT" in refusal.codes else
                          "Deze bestelling kennen we niet.")
            return _bags_page(page, form, status=409)
        page.session.flash(done)
        return page.redirect(BAGS)
    return step


def _order(page):
    form = Form({name: page.form.get(name) for name in ("aantal", "steunpunt", "tekst")})
    quantity = _quantity(form, "aantal", "het aantal tassen")
    lines = [line.strip() for line in form.get("tekst").splitlines() if line.strip()]
    if len(lines) > 20 or any(len(line) > 300 for line in lines):
        form.fail("tekst", "Gebruik hoogstens 20 regels van elk hoogstens 300 tekens.")
    if form.errors:
        return _bags_page(page, form, status=400)
    try:
        page.graphql(operations.ORDER_BAGS, {
            "code": page.session["municipality"], "point": form.get("steunpunt") or None,
            "quantity": quantity, "inserts": lines})
    except OperationRefused as refusal:
        form.refused(refusal, {"aantal": ("quantity", "Vul een aantal van 1 tot en met "
                                                     "100.000 in."),
                               "steunpunt": ("supportPointId", "Kies een actief steunpunt van "
                                                               "uw gemeente, of geen."),
                               "tekst": ("localInserts", "Gebruik hoogstens 20 regels van elk "
                                                         "hoogstens 300 tekens.")},
                     "Bestellen lukte niet. Controleer wat u hebt ingevuld.")
        return _bags_page(page, form, status=400)
    page.session.flash(f"Uw bestelling van {quantity} tassen is geplaatst.")
    return page.redirect(BAGS)


def _cancel(page):
    order_id = page.form.get("bestelling", "")
    form = Form({f"reden-{order_id}": page.form.get("reden")})
    reason = form.required(f"reden-{order_id}", "de reden waarom u annuleert")
    if form.errors:
        return _bags_page(page, form, status=400)
    try:
        page.graphql(operations.CANCEL_ORDER, {"id": order_id, "reason": reason})
    except OperationRefused:
        form.fail("", "Annuleren lukte niet: de bestelling is al verzonden of geannuleerd.")
        return _bags_page(page, form, status=409)
    page.session.flash("De bestelling is geannuleerd. De tassen gaan terug naar de voorraad.")
    return page.redirect(BAGS)


TEAM_ACTIONS = {
    "drukgang": _print_run,
    "verdelen": _allocate,
    "verzonden": _order_step(operations.MARK_SHIPPED, "De bestelling staat op verzonden."),
    "afgeleverd": _order_step(operations.MARK_DELIVERED, "De bestelling staat op afgeleverd."),
}
MUNICIPALITY_ACTIONS = {"bestellen": _order, "annuleren": _cancel}


# --- campaigns -----------------------------------------------------------------------------

CAMPAIGN_FIELDS = {
    "naam": ("input.name", "Vul de naam van de campagne in."),
    "hashtag": ("input.hashtag", "Vul een hashtag in zoals #deeljezorg."),
    "bereik": ("input.scope", "Kies landelijk of regionaal."),
    "gemeenten": ("input.municipalityCodes", "Vul bij een regionale campagne de CBS-codes "
                                             "van de gemeenten in, zoals GM0307, GM0310."),
    "begin": ("input.startsOn", "Vul de eerste dag in, zoals 01-03-2027."),
    "einde": ("input.endsOn", "Vul de laatste dag in, op of na de eerste dag."),
    "materialen": ("input.materials", "Noem het materiaal, één per regel."),
}
SCOPE_NAMES = {"NATIONAL": "Landelijk", "REGIONAL": "Regionaal"}


def _campaigns_page(page, form=None, status=200):
    form = form or Form({})
    found = page.graphql(operations.CAMPAIGNS)["campaigns"]
    found.sort(key=lambda c: c["startsOn"], reverse=True)
    template = ("desk_campaigns_team.html" if page.session["role"] == TEAM
                else "desk_campaigns_municipality.html")
    return page.render(template, campaigns=found, form=form, errors=form.errors,
                       scopes=SCOPE_NAMES, status=status)


def campaigns(page):
    page.require_staff(TEAM, MUNICIPALITY)
    if page.request.method == "GET":
        return _campaigns_page(page)
    action = page.form.get("actie")
    if page.session["role"] == TEAM and action == "aanmaken":
        return _create_campaign(page)
    if page.session["role"] == TEAM and action == "starten":
        return _campaign_step(page, operations.LAUNCH_CAMPAIGN, {},
                              "De campagne is gestart. Het materiaal gaat naar de steunpunten.")
    if page.session["role"] == MUNICIPALITY and action == "afmelden":
        return _campaign_step(page, operations.OPT_OUT, {"code": page.session["municipality"]},
                              "Uw gemeente doet niet mee aan deze campagne.")
    form = Form({})
    form.fail("", "Kies wat u wilt doen.")
    return _campaigns_page(page, form, status=400)


def _campaign_step(page, operation, variables, done):
    try:
        page.graphql(operation, {"id": page.form.get("campagne", ""), **variables})
    except OperationRefused:
        form = Form({})
        form.fail("", "Dit lukte niet: de campagne is intussen veranderd. Hieronder ziet u hoe "
                      "het er nu mee staat.")
        return _campaigns_page(page, form, status=409)
    page.session.flash(done)
    return page.redirect(CAMPAIGNS)


def _create_campaign(page):
    form = Form({name: page.form.get(name) for name in CAMPAIGN_FIELDS})
    name = form.required("naam", "de naam van de campagne")
    hashtag = form.required("hashtag", "de hashtag")
    scope = form.get("bereik")
    if scope not in SCOPE_NAMES:
        form.fail("bereik", "Kies landelijk of regionaal.")
    codes = [c.strip().upper() for c in form.get("gemeenten").replace(",", " ").split()]
    if scope == "REGIONAL" and not codes:
        form.fail("gemeenten", CAMPAIGN_FIELDS["gemeenten"][1])
    starts = form.day("begin", "de eerste dag")
    ends = form.day("einde", "de laatste dag")
    if not form.errors and ends < starts:
        form.fail("einde", "De laatste dag ligt op of na de eerste dag.")
    materials = [line.strip() for line in form.get("materialen").splitlines() if line.strip()]
    if not materials:
        form.fail("materialen", CAMPAIGN_FIELDS["materialen"][1])
    if form.errors:
        return _campaigns_page(page, form, status=400)
    try:
        page.graphql(operations.CREATE_CAMPAIGN, {"input": {
            "name": name, "hashtag": hashtag, "scope": scope,
            "municipalityCodes": codes if scope == "REGIONAL" else None,
            "startsOn": starts, "endsOn": ends, "materials": materials}})
    except OperationRefused as refusal:
        form.refused(refusal, CAMPAIGN_FIELDS, "Aanmaken lukte niet. Controleer wat u hebt "
                                               "ingevuld.")
        return _campaigns_page(page, form, status=400)
    page.session.flash(f"De campagne {name} is aangemaakt. Start haar als alles klopt.")
    return page.redirect(CAMPAIGNS)
