"""The desks' addresses, as nameko HTTP entrypoints of the gateway (mixed into its service
class beside the caregiver and municipality pages). Stable: bookmarks depend on them."""
from gateway.server import http

from gateway.web.app import serve
from gateway.web.desks import check, fund, support_point


class DeskPages:
    """The fund's, a support point's and the partners' pages. The campaign team's pages share
    their addresses with the municipality's (``gateway/web/routes.py``)."""

    @http("GET", "/medewerkers/reiskosten")
    def desk_claims(self, request):
        return serve(self, request, fund.claims)

    @http("GET", "/medewerkers/reiskosten/<claim_id>")
    def desk_claim(self, request, claim_id):
        return serve(self, request, fund.claim, claim_id)

    @http("GET,POST", "/medewerkers/reiskosten/<claim_id>/beoordeling")
    def desk_review_claim(self, request, claim_id):
        return serve(self, request, fund.review, claim_id)

    @http("GET", "/medewerkers/uitbetalingen")
    def desk_payouts(self, request):
        return serve(self, request, fund.payouts)

    @http("GET,POST", "/medewerkers/uitbetalingen/voorstellen")
    def desk_propose_payout(self, request):
        return serve(self, request, fund.propose)

    @http("GET,POST", "/medewerkers/uitbetalingen/<batch_id>/vrijgeven")
    def desk_release_payout(self, request, batch_id):
        return serve(self, request, fund.release, batch_id)

    @http("GET", "/medewerkers/uitbetalingen/<batch_id>/sepa.xml")
    def desk_payout_file(self, request, batch_id):
        return serve(self, request, fund.sepa_file, batch_id)

    @http("GET,POST", "/medewerkers/steunpunt")
    def desk_support_point(self, request):
        return serve(self, request, support_point.support_point)

    @http("GET,POST", "/controleren")
    def desk_check(self, request):
        return serve(self, request, check.check)
