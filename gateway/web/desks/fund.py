"""The travel-cost fund's desk: claims waiting for a review (on hold first, with why in
Dutch, then those just submitted), one claim with its trips and history, approving or
rejecting it with a reason; payout batches proposed by one fund member and released by
another (four eyes), and the released batch's SEPA file."""
from decimal import Decimal
from urllib.parse import quote

from nameko.exceptions import RpcTimeout, UnknownService
from werkzeug.wrappers import Response

from common.errors import BadUserInput, Conflict, Forbidden, NotFound, Unavailable
from gateway.schema.travel_costs import payout_file
from gateway.web.app import STAFF_PAGES, OperationRefused, ServiceDown
from gateway.web.desks import operations
from gateway.web.reasons import claim_reasons
from gateway.web.forms import Form
from gateway.web.views import not_found

FUND = ("fund",)
CLAIMS = STAFF_PAGES + "/reiskosten"
PAYOUTS = STAFF_PAGES + "/uitbetalingen"
LIST_SIZE = 50   # claims of each list on one page
# The query parameter that pages each list: the id of the last claim of the page before.
PAGED = {"held": "aangehouden_na", "waiting": "ingediend_na"}


def claims(page):
    """Both lists, each paged on its own (the other list stays on its page)."""
    page.require_staff(*FUND)
    after = {name: page.request.args.get(param) or None for name, param in PAGED.items()}
    try:
        found = page.graphql(operations.CLAIMS_TO_REVIEW, {
            "first": LIST_SIZE + 1, "heldAfter": after["held"],
            "waitingAfter": after["waiting"]})
    except OperationRefused:   # a cursor that is no claim's id: the first pages
        after = dict.fromkeys(PAGED)
        found = page.graphql(operations.CLAIMS_TO_REVIEW, {"first": LIST_SIZE + 1})
    lists = {}
    for name in PAGED:
        rows = found[name][:LIST_SIZE]
        more = len(found[name]) > LIST_SIZE
        lists[name] = {"rows": rows, "after": after[name],
                       "first_page": _claims_address(after, name, None),
                       "next_page": _claims_address(after, name, rows[-1]["id"]) if more
                       else None}
    for claim in lists["held"]["rows"]:
        claim["why"] = claim_reasons(claim["reason"])
    return page.render("desk_claims.html", held=lists["held"], waiting=lists["waiting"],
                       list_size=LIST_SIZE)


def _claims_address(after, name, cursor):
    """The claims page with list ``name`` after ``cursor`` and the other list as it is."""
    chosen = {**after, name: cursor}
    query = "&".join(f"{PAGED[n]}={quote(c)}" for n, c in chosen.items() if c)
    return f"{CLAIMS}?{query}" if query else CLAIMS


def _show_claim(page, claim_id, form=None, status=200):
    found = page.graphql_found(operations.CLAIM, {"id": claim_id}, "travelClaim",
                               {"NOT_FOUND", "BAD_USER_INPUT"})
    if found is None:
        return not_found(page)
    form = form or Form({})
    return page.render("desk_claim.html", claim=found, why=claim_reasons(found["reason"]),
                       form=form, errors=form.errors, status=status)


def claim(page, claim_id):
    page.require_staff(*FUND)
    return _show_claim(page, claim_id)


def review(page, claim_id):
    """Approve, or reject with a reason (a claim on hold needs a reason either way)."""
    page.require_staff(*FUND)
    if page.request.method == "GET":
        return page.redirect(f"{CLAIMS}/{claim_id}")
    action = page.form.get("actie")
    form = Form({"reden": page.form.get("reden")})
    if action not in ("goedkeuren", "afwijzen"):
        form.fail("", "Kies of u de declaratie goedkeurt of afwijst.")
        return _show_claim(page, claim_id, form, status=400)
    if action == "afwijzen" and not form.get("reden"):
        form.fail("reden", "Vul de reden in waarom u afwijst. De mantelzorger leest die.")
        return _show_claim(page, claim_id, form, status=400)
    try:
        page.graphql(operations.REVIEW_CLAIM, {"id": claim_id, "approve": action == "goedkeuren",
                                               "reason": form.get("reden") or None})
    except OperationRefused as refusal:
        if "NOT_FOUND" in refusal.codes:
            return not_found(page)
        if "reason" in refusal.fields:
            form.fail("reden", "Vul de reden in (hoogstens 500 tekens). Bij een declaratie die "
                               "is aangehouden is een reden altijd nodig: de mantelzorger "
                               "leest waarom die toch wordt betaald of niet.")
        else:
            form.fail("", "Dit lukte niet: de declaratie is intussen veranderd. Hieronder ziet "
                          "u hoe het er nu mee staat.")
        return _show_claim(page, claim_id, form,
                           status=400 if "BAD_USER_INPUT" in refusal.codes else 409)
    page.session.flash("De declaratie is goedgekeurd." if action == "goedkeuren"
                       else "De declaratie is afgewezen.")
    return page.redirect(CLAIMS)


# --- payouts -----------------------------------------------------------------------------

def _approved_not_proposed(page, batches):
    """How many approved claims a new batch would hold, and their total: every approved
    claim less those reserved for a batch awaiting release."""
    count, total, after = 0, Decimal("0"), None
    while True:
        found = page.graphql(operations.APPROVED_CLAIMS,
                             {"first": LIST_SIZE, "after": after})["travelClaims"]
        count += len(found)
        total += sum(Decimal(c["amountEuros"]) for c in found)
        if len(found) < LIST_SIZE:
            break
        after = found[-1]["id"]
    for batch in batches:
        if batch["status"] == "AWAITING_RELEASE":
            count -= batch["claimCount"]
            total -= Decimal(batch["totalEuros"])
    return max(count, 0), max(total, Decimal("0"))


def _payouts(page, errors=None, status=200):
    batches = page.graphql(operations.PAYOUT_BATCHES, {"first": 20})["payoutBatches"]
    count, total = _approved_not_proposed(page, batches)
    return page.render("desk_payouts.html", batches=batches, count=count, total=total,
                       errors=errors or {}, status=status)


def payouts(page):
    page.require_staff(*FUND)
    return _payouts(page)


def propose(page):
    page.require_staff(*FUND)
    if page.request.method == "GET":
        return page.redirect(PAYOUTS)
    try:
        batch = page.graphql(operations.PROPOSE_BATCH)["createPayoutBatch"]
    except OperationRefused as refusal:
        return _payouts(page, {"": "Er zijn geen goedgekeurde declaraties om uit te betalen "
                                   "die niet al in een voorstel staan."
                               if "BAD_USER_INPUT" in refusal.codes else
                               "Voorstellen lukte niet: er is intussen iets veranderd. "
                               "Bekijk hieronder de uitbetalingen en probeer het opnieuw."},
                        status=409)
    count = batch["claimCount"]
    page.session.flash(f"U hebt een uitbetaling voorgesteld van {count} "
                       f"{'declaratie' if count == 1 else 'declaraties'}. Een collega van het "
                       f"fonds moet haar nu vrijgeven.")
    return page.redirect(PAYOUTS)


def release(page, batch_id):
    page.require_staff(*FUND)
    if page.request.method == "GET":
        return page.redirect(PAYOUTS)
    try:
        page.graphql(operations.RELEASE_BATCH, {"id": batch_id})
    except OperationRefused as refusal:
        if "NOT_FOUND" in refusal.codes:
            return not_found(page)
        return _payouts(page, {"": YOUR_OWN if "FORBIDDEN" in refusal.codes else
                               "Deze uitbetaling is al vrijgegeven, misschien net door een "
                               "collega. Hieronder ziet u hoe het ermee staat."}, status=
                        403 if "FORBIDDEN" in refusal.codes else 409)
    page.session.flash("De uitbetaling is vrijgegeven. De declaraties zijn uitbetaald; u kunt "
                       "het betaalbestand nu downloaden.")
    return page.redirect(PAYOUTS)


YOUR_OWN = ("U kunt deze uitbetaling niet vrijgeven, omdat u haar zelf hebt voorgesteld. "
            "Bij het fonds kijken altijd twee mensen naar een betaling (vier ogen): een "
            "collega geeft haar vrij.")


def sepa_file(page, batch_id):
    page.require_staff(*FUND)
    context = page.context()
    try:
        content = payout_file(context, batch_id)
    except (NotFound, Forbidden, BadUserInput):   # BAD_USER_INPUT: not an id at all
        return not_found(page)
    except Conflict:
        return _payouts(page, {"": "Het betaalbestand is er pas als een collega de "
                                   "uitbetaling heeft vrijgegeven."}, status=409)
    except (RpcTimeout, UnknownService, TimeoutError, Unavailable):
        raise ServiceDown() from None
    return Response(content, mimetype="application/xml", headers={
        "Content-Disposition": f'attachment; filename="sepa-{batch_id}.xml"'})
