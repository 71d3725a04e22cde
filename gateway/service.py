"""The gateway: GraphQL over HTTP in front of the services, which it reaches over RPC."""
import base64
import json
from pathlib import Path

import structlog
from nameko.dependency_providers import Config
from nameko.rpc import RpcProxy
from nameko.web.handlers import http
from werkzeug.wrappers import Response

from common.errors import NotFound
from common.logging import CORRELATION_HEADER, CORRELATION_KEY
from common.service import InstrumentedService
from gateway import printable
from gateway.auth import TokenVerifier
from gateway.errors import HTTP_STATUS, BadRequest, format_error
from gateway.executor import GraphQLContext, run_query
from gateway.jwks import PublicKeys

MAX_BODY_BYTES = 1024 * 1024
GRAPHIQL_PAGE = (Path(__file__).parent / "graphiql.html").read_text()
VERIFIER = TokenVerifier()
PUBLIC_KEYS = PublicKeys()


class GatewayService(InstrumentedService):
    name = "gateway"
    config = Config()

    # No publisher confirms on calls: the gateway waits for the reply anyway, and its timeout
    # answers UNAVAILABLE when none comes. A confirm would add a broker round trip per call.
    registry = RpcProxy("registry", use_confirms=False)
    declaration = RpcProxy("declaration", use_confirms=False)
    travel_costs = RpcProxy("travel_costs", use_confirms=False)
    campaign = RpcProxy("campaign", use_confirms=False)

    @http("POST", "/graphql")
    def graphql(self, request):
        try:
            return self._graphql(request)
        except Exception as error:   # never nameko's error page: it leaks exception text
            return self._error(error, status=500)

    def _graphql(self, request):
        raw = request.stream.read(MAX_BODY_BYTES + 1)   # never more, whatever the header says
        if len(raw) > MAX_BODY_BYTES:
            return self._error(BadRequest("request body over 1 MiB"), status=413)
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return self._error(BadRequest("the body must be a JSON object"))
        try:
            principal = VERIFIER.principal(request.headers.get("Authorization"))
        except Exception as error:
            return self._error(error)
        return self._json(run_query(body, GraphQLContext(self, principal, self._timeout())))

    @http("GET", "/.well-known/jwks.json")
    def jwks(self, request):
        """The public keys of the declarations' signed tokens, for offline verification."""
        try:
            context = GraphQLContext(self, None, self._timeout())
            document = PUBLIC_KEYS.get(lambda: context.call("declaration", "signing_keys"))
        except Exception as error:
            return self._error(error)
        response = self._json(document)
        response.headers["Cache-Control"] = "public, max-age=300"
        return response

    @http("GET", "/declarations/<reference>.pdf")
    def declaration_pdf(self, request, reference):
        """The printable declaration: its owner caregiver or the issuing municipality."""
        return self._document(
            request, ("caregiver", "municipality"), "application/pdf", f"{reference}.pdf",
            lambda context: printable.render(
                context.call("declaration", "printable", reference, context.actor)))

    @http("GET", "/payout-batches/<batch_id>/sepa.xml")
    def payout_file(self, request, batch_id):
        """The SEPA credit transfer file of a payout batch: fund staff and admin."""
        def fetch(context):
            content = bytearray()
            while True:   # in pieces: one RPC message stays small however large the file
                piece = context.call("travel_costs", "payout_file", batch_id, len(content),
                                     context.actor)
                content += base64.b64decode(piece["data"])
                if not piece["data"] or len(content) >= piece["size"]:
                    return bytes(content)

        return self._document(request, ("fund", "admin"), "application/xml",
                              f"sepa-{batch_id}.xml", fetch, disposition="attachment")

    @http("GET", "/travel-statements/<int:year>.pdf")
    def travel_statement_pdf(self, request, year):
        """The caller's printable statement of what the fund paid them in a year."""
        return self._document(
            request, ("caregiver",), "application/pdf", f"reiskosten-{year}.pdf",
            lambda context: printable.render_travel_statement(
                context.call("travel_costs", "travel_statement", year, context.actor)))

    def _document(self, request, roles, mimetype, filename, produce, disposition="inline"):
        """A document for the bearer of a token of one of ``roles``: ``produce(context)``
        makes its bytes. Errors answer as JSON with the HTTP status of their code."""
        try:
            principal = VERIFIER.principal(request.headers.get("Authorization"))
            principal.require(*roles)
            content = produce(GraphQLContext(self, principal, self._timeout()))
        except Exception as error:
            return self._error(error)
        return Response(content, mimetype=mimetype, headers={
            "Content-Disposition": f'{disposition}; filename="{filename}"',
            "Cache-Control": "private, no-store"})

    def _timeout(self):
        return float(self.config.get("RPC_TIMEOUT_SECONDS", 10))

    def _error(self, error, status=None):
        """An error answered as JSON, with the HTTP status of its code."""
        entry = format_error(error)
        return self._json({"errors": [entry]},
                          status or HTTP_STATUS.get(entry["extensions"]["code"], 500))

    @http("GET", "/graphql")
    def graphiql(self, request):
        return Response(GRAPHIQL_PAGE, mimetype="text/html")

    @http("GET", "/health")
    def liveness(self, request):
        return self._json({"status": "ok"})

    @http("GET,POST,PUT,PATCH,DELETE", "/<path:path>")
    def not_found(self, request, path):
        # Instead of the framework's HTML page: every answer is JSON.
        return self._error(NotFound("no such resource"))

    def _json(self, payload, status=200):
        response = Response(json.dumps(payload, default=str), status=status,
                            mimetype="application/json")
        response.headers[CORRELATION_HEADER] = structlog.contextvars.get_contextvars().get(
            CORRELATION_KEY, "")
        return response
