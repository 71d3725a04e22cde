"""Information bags and campaigns, one page per address with the role deciding what it
shows: the campaign team runs the stock, the print runs, the allocation rounds, shipping and
delivery, and the campaigns (here); a municipality orders bags for itself or one of its
support points, sees and cancels its orders, and sees the campaigns that include it, opting
out of a regional one (its views in ``gateway/web/staff.py``)."""
from gateway.web import staff
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
    shown = page.request.args.get("status") or ""
    if shown not in BAG_ORDER_STATUS_NAMES:
        shown = ""
    municipality = (page.request.args.get("gemeente") or "").strip().upper()
    try:
        orders = _orders(page, municipality or None)
    except OperationRefused:   # not a municipality's code
        orders = []
        form.fail("gemeente", "Vul de CBS-code van een gemeente in, zoals GM0307, of laat "
                              "het veld leeg voor alle gemeenten.")
        status = 400
    return page.render("desk_bags.html", form=form, errors=form.errors, round=round_,
                       shown=shown, municipality=municipality,
                       orders=[o for o in orders if not shown or o["status"] == shown],
                       stock=page.graphql(operations.BAG_STOCK)["bagStock"],
                       status=status)


def _team_desk(page, municipality_view, team_page, actions):
    """A page of the campaign team at an address a municipality opens too (and then sees its
    own view): the team's page, or the action the form names (``actie``)."""
    page.require_staff(TEAM, MUNICIPALITY)
    if page.session["role"] == MUNICIPALITY:
        return municipality_view(page)
    if page.request.method == "GET":
        return team_page(page)
    handler = actions.get(page.form.get("actie"))
    if handler is None:
        form = Form({})
        form.fail("", "Kies wat u wilt doen.")
        return team_page(page, form, status=400)
    return handler(page)


def bags(page):
    """The campaign team's page; a municipality's own view of the same address."""
    return _team_desk(page, staff.bag_orders, _bags_page, BAG_ACTIONS)


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
    try:
        page.graphql(operations.ADD_PRINT_RUN, {"quantity": quantity})
    except OperationRefused as refusal:
        form.refused(refusal, {"aantal": ("quantity", "Vul een aantal in dat het platform "
                                                     "aanneemt, zoals 25000.")},
                     "Toevoegen lukte niet. Probeer het opnieuw.")
        return _bags_page(page, form, status=400)
    page.session.flash(f"De drukgang van {quantity:,} tassen is toegevoegd aan de voorraad."
                       .replace(",", "."))
    return page.redirect(BAGS)


def _allocate(page):
    try:
        round_ = page.graphql(operations.RUN_ALLOCATION)["runBagAllocation"]
    except OperationRefused:   # another round or order changed the stock meanwhile
        form = Form({})
        form.fail("", "De verdeelronde lukte niet: de voorraad veranderde intussen. Voer de "
                      "ronde opnieuw uit.")
        return _bags_page(page, form, status=409)
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


BAG_ACTIONS = {
    "drukgang": _print_run,
    "verdelen": _allocate,
    "verzonden": _order_step(operations.MARK_SHIPPED, "De bestelling staat op verzonden."),
    "afgeleverd": _order_step(operations.MARK_DELIVERED, "De bestelling staat op afgeleverd."),
}


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
    return page.render("desk_campaigns.html", campaigns=found, form=form, errors=form.errors,
                       scopes=SCOPE_NAMES, status=status)


def campaigns(page):
    """The campaign team's page; a municipality's own view of the same address."""
    return _team_desk(page, staff.campaigns, _campaigns_page, CAMPAIGN_ACTIONS)


def _campaign_step(page, operation, done):
    try:
        page.graphql(operation, {"id": page.form.get("campagne", "")})
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


CAMPAIGN_ACTIONS = {
    "aanmaken": _create_campaign,
    "starten": lambda page: _campaign_step(
        page, operations.LAUNCH_CAMPAIGN,
        "De campagne is gestart. Het materiaal gaat naar de steunpunten."),
}
