"""The caregiver and staff pages' addresses (stable: links and bookmarks depend on them), as nameko
HTTP entrypoints of the gateway. Each hands its request to its view in ``views.py``."""
from gateway.server import http

from gateway.web import assets, signin, staff, views
from gateway.web.app import serve


class CaregiverPages:
    """Mixed into the gateway's service class."""

    production_sign_in = signin.ProductionSignIn()

    @http("GET", "/")
    def page_start(self, request):
        return serve(self, request, views.start)

    @http("GET", "/steunpunten")
    def page_support_points(self, request):
        return serve(self, request, views.support_points)

    @http("GET,POST", "/inloggen")
    def page_sign_in(self, request):
        return serve(self, request, views.sign_in)

    @http("GET", "/inloggen/start")
    def page_sign_in_with_provider(self, request):
        return serve(self, request, views.sign_in_with_provider)

    @http("GET", "/inloggen/terug")
    def page_sign_in_callback(self, request):
        return serve(self, request, views.sign_in_callback)

    @http("GET,POST", "/uitloggen")
    def page_sign_out(self, request):
        return serve(self, request, views.sign_out)

    @http("GET", "/verklaringen")
    def page_declarations(self, request):
        return serve(self, request, views.declarations)

    @http("GET,POST", "/verklaringen/nieuwe-code")
    def page_renew_code(self, request):
        return serve(self, request, views.renew_code)

    @http("GET", "/verklaringen/<reference>.pdf")
    def page_declaration_pdf(self, request, reference):
        return serve(self, request, views.declaration_pdf, reference)

    @http("GET", "/verklaringen/<reference>/besluit.pdf")
    def page_decision_letter(self, request, reference):
        return serve(self, request, views.decision_letter, reference)

    @http("GET", "/verklaringen/inzage")
    def page_personal_data_access(self, request):
        return serve(self, request, views.personal_data_access)

    @http("GET,POST", "/verklaringen/aanvragen")
    def page_request_declaration(self, request):
        return serve(self, request, views.request_declaration)

    @http("GET", "/reiskosten")
    def page_travel_claims(self, request):
        return serve(self, request, views.travel_claims)

    @http("GET,POST", "/reiskosten/indienen")
    def page_submit_travel_claim(self, request):
        return serve(self, request, views.submit_travel_claim)

    @http("GET", "/berichten")
    def page_messages(self, request):
        return serve(self, request, views.messages)

    @http("GET", "/toegankelijkheid")
    def page_accessibility(self, request):
        return serve(self, request, views.accessibility)

    @http("GET", "/static/<path:name>")
    def static_file(self, request, name):
        return assets.response(name) or serve(self, request, views.not_found)


class StaffPages:
    """The pages for staff of municipalities and national organisations, under /medewerkers.
    Mixed into the gateway's service class."""

    @http("GET", "/medewerkers")
    def staff_home(self, request):
        return serve(self, request, staff.home)

    @http("GET,POST", "/medewerkers/inloggen")
    def staff_sign_in(self, request):
        return serve(self, request, staff.sign_in)

    @http("GET", "/medewerkers/inloggen/start")
    def staff_sign_in_with_provider(self, request):
        return serve(self, request, staff.sign_in_with_provider)

    @http("GET", "/medewerkers/inloggen/terug")
    def staff_sign_in_callback(self, request):
        return serve(self, request, staff.sign_in_callback)

    @http("GET,POST", "/medewerkers/uitloggen")
    def staff_sign_out(self, request):
        return serve(self, request, staff.sign_out)

    @http("GET", "/medewerkers/aanvragen")
    def staff_queue(self, request):
        return serve(self, request, staff.queue)

    @http("GET", "/medewerkers/aanvragen/<reference>")
    def staff_request(self, request, reference):
        return serve(self, request, staff.request_page, reference)

    @http("GET,POST", "/medewerkers/aanvragen/<reference>/besluit")
    def staff_decide(self, request, reference):
        return serve(self, request, staff.decide, reference)

    @http("GET,POST", "/medewerkers/aanvragen/<reference>/nieuwe-code")
    def staff_renew_code(self, request, reference):
        return serve(self, request, staff.renew_code, reference)

    @http("GET", "/medewerkers/aanvragen/<reference>/besluit.pdf")
    def staff_decision_letter(self, request, reference):
        return serve(self, request, staff.decision_letter, reference)

    @http("GET,POST", "/medewerkers/instellingen")
    def staff_settings(self, request):
        return serve(self, request, staff.settings_page)

    @http("GET,POST", "/medewerkers/campagnes")
    def staff_campaigns(self, request):
        return serve(self, request, staff.campaigns)

    @http("GET", "/medewerkers/steunpunten")
    def staff_support_points(self, request):
        return serve(self, request, staff.support_points)

    @http("GET,POST", "/medewerkers/steunpunten/nieuw")
    def staff_register_support_point(self, request):
        return serve(self, request, staff.register_support_point)

    @http("GET,POST", "/medewerkers/steunpunten/<point_id>")
    def staff_support_point(self, request, point_id):
        return serve(self, request, staff.support_point, point_id)

    @http("GET,POST", "/medewerkers/steunpunten/<point_id>/opheffen")
    def staff_deactivate_support_point(self, request, point_id):
        return serve(self, request, staff.deactivate_support_point, point_id)

    @http("GET,POST", "/medewerkers/informatietassen")
    def staff_bag_orders(self, request):
        return serve(self, request, staff.bag_orders)
