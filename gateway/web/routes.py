"""The caregiver pages' addresses (stable: links and bookmarks depend on them), as nameko
HTTP entrypoints of the gateway. Each hands its request to its view in ``views.py``."""
from gateway.server import http

from gateway.web import assets, signin, views
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
