"""The gateway: GraphQL over HTTP in front of the services, which it reaches over RPC."""
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
from gateway.web.routes import CaregiverPages

MAX_BODY_BYTES = 1024 * 1024
GRAPHIQL_PAGE = (Path(__file__).parent / "graphiql.html").read_text()
VERIFIER = TokenVerifier()
PUBLIC_KEYS = PublicKeys()


class GatewayService(CaregiverPages, InstrumentedService):
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
        try:
            principal = VERIFIER.principal(request.headers.get("Authorization"))
            return printable.pdf_response(GraphQLContext(self, principal, self._timeout()),
                                          reference)
        except Exception as error:
            return self._error(error)

    def _timeout(self):
        return float(self.config.get("RPC_TIMEOUT_SECONDS", 10))

    def _error(self, error, status=None):
        """An error answered as JSON, with the HTTP status of its code."""
        entry = format_error(error)
        return self._json({"errors": [entry]},
                          status or HTTP_STATUS.get(entry["extensions"]["code"], 500))

    @http("GET", "/graphql")
    def graphiql(self, request):
        # Its scripts and styles come from the gateway itself (npm, see gateway/web/assets.py);
        # GraphiQL sets inline styles and has its fonts inlined as data: URLs.
        return Response(GRAPHIQL_PAGE, mimetype="text/html", headers={
            "Content-Security-Policy": "default-src 'self'; script-src 'self'; "
                                       "style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
                                       "font-src 'self' data:; frame-ancestors 'none'"})

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
