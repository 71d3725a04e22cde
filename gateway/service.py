"""The gateway: GraphQL over HTTP in front of the services, which it reaches over RPC."""
import functools
import json
from pathlib import Path

import structlog
from graphql import print_schema
from nameko.dependency_providers import Config
from werkzeug.wrappers import Response

from common import config as settings
from common.logging import CORRELATION_HEADER, CORRELATION_KEY
from common.metrics import MetricsServer
from common.service import InstrumentedService
from gateway import printable
from gateway.auth import Authentication
from gateway.context import DEFAULT_DEADLINE_SECONDS, ExpiringRpcProxy, GraphQLContext
from gateway.errors import HTTP_STATUS, BadRequest, error_entry, format_error
from gateway.executor import is_mutation, run_query
from gateway.idempotency import IDEMPOTENCY_HEADER, Idempotency
from gateway.jwks import published_keys
from gateway.schema import schema
from gateway.schema.travel_costs import payout_file
from gateway.server import MAX_BODY_BYTES, http
from gateway.storage import GatewayStore
from gateway.web.app import WebSessions
from gateway.web.desks.routes import DeskPages
from gateway.web.routes import CaregiverPages, StaffPages

GRAPHIQL_PAGE = (Path(__file__).parent / "graphiql.html").read_text()
SCHEMA_SDL = print_schema(schema.graphql_schema) + "\n"


class GatewayService(CaregiverPages, StaffPages, DeskPages, InstrumentedService):
    name = "gateway"
    config = Config()
    tokens = Authentication()
    metrics_server = MetricsServer()
    idempotency = Idempotency(GatewayStore)
    web_sessions = WebSessions()

    # One RPC proxy per service (attribute = service name) is added below the class.

    @http("POST", "/graphql")
    def graphql(self, request):
        try:
            response = self._graphql(request)
        except Exception as error:   # never nameko's error page: it leaks exception text
            response = self._error(error, status=500)
        # An answer may hold personal data or a verification code: no cache keeps it.
        response.headers["Cache-Control"] = "no-store"
        return response

    def _graphql(self, request):
        raw = request.stream.read(MAX_BODY_BYTES + 1)   # never more, whatever the header says
        if len(raw) > MAX_BODY_BYTES:
            return self._error(BadRequest("request body over 1 MiB"), status=413)
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            body = None
        except RecursionError:   # arrays or objects nested thousands deep
            return self._error(BadRequest("the body is nested too deeply"))
        if not isinstance(body, dict):
            return self._error(BadRequest("the body must be a JSON object"))
        try:
            principal = self.tokens.principal(request.headers.get("Authorization"))
            context = self.graphql_context(principal)
            key = request.headers.get(IDEMPOTENCY_HEADER)
            if key is not None and principal.authenticated and is_mutation(body):
                context.request_id = self.idempotency.request_identity(key, principal, body)
                context.on_deadline_extended = functools.partial(
                    self.idempotency.extend, key, principal)
                return self._json(self.idempotency.answer_once(
                    key, principal, body, lambda: run_query(body, context),
                    deadline_seconds=context.deadline_seconds))
        except Exception as error:
            return self._error(error)
        return self._json(run_query(body, context))

    @http("GET", "/.well-known/jwks.json")
    def jwks(self, request):
        """The public keys of the declarations' signed tokens, for offline verification."""
        try:
            context = self.graphql_context(None)
            document = published_keys(context)
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
            lambda context: printable.declaration_document(context, reference))

    @http("GET", "/bag-orders/<order_id>/insert.pdf")
    def bag_order_insert_pdf(self, request, order_id):
        """The printable local insert of an allocated order, for those who may see the order."""
        return self._document(
            request, ("municipality", "support_point", "campaign", "admin"), "application/pdf",
            f"insert-{order_id}.pdf", lambda context: printable.render_insert(context.call(
                "campaign", "bag_order_insert", order_id, context.actor)))

    @http("GET", "/payout-batches/<batch_id>/sepa.xml")
    def payout_file(self, request, batch_id):
        """The SEPA credit transfer file of a payout batch: fund staff and admin."""
        return self._document(request, ("fund", "admin"), "application/xml",
                              f"sepa-{batch_id}.xml",
                              lambda context: payout_file(context, batch_id),
                              disposition="attachment")

    @http("GET", "/travel-statements/<int:year>.pdf")
    def travel_statement_pdf(self, request, year):
        """The caller's printable statement of what the fund paid them in a year."""
        return self._document(
            request, ("caregiver",), "application/pdf", f"reiskosten-{year}.pdf",
            lambda context: printable.travel_statement_document(context, year))

    def _document(self, request, roles, mimetype, filename, produce, disposition="inline"):
        """A document for the bearer of a token of one of ``roles``: ``produce(context)``
        makes its bytes. Errors answer as JSON with the HTTP status of their code."""
        try:
            principal = self.tokens.principal(request.headers.get("Authorization"))
            principal.require(*roles)
            content = produce(self.graphql_context(principal))
        except Exception as error:
            return self._error(error)
        return Response(content, mimetype=mimetype, headers={
            "Content-Disposition": f'{disposition}; filename="{filename}"',
            "Cache-Control": "private, no-store"})

    def graphql_context(self, principal):
        """The GraphQL context of a request by ``principal``, with the RPC timeout and the
        request deadline of the configuration."""
        return GraphQLContext(
            self, principal, timeout=settings.float_setting(self.config, "RPC_TIMEOUT_SECONDS", 5),
            deadline_seconds=settings.float_setting(self.config, "REQUEST_DEADLINE_SECONDS",
                                                    DEFAULT_DEADLINE_SECONDS))

    def _error(self, error, status=None):
        """An error answered as JSON, with the HTTP status of its code."""
        entry = format_error(error)
        return self._json({"errors": [entry]},
                          status or HTTP_STATUS.get(entry["extensions"]["code"], 500))

    @http("GET", "/graphql")
    def graphiql(self, request):
        """GraphiQL, for people trying the API: in development; in production only when an
        operator turns it on (``GATEWAY_GRAPHIQL=true``), else NOT_FOUND."""
        if not graphiql_enabled(self.config):
            return self._json({"errors": [error_entry("no such resource", "NOT_FOUND")]}, 404)
        # Its scripts and styles come from the gateway itself (npm, see gateway/web/assets.py);
        # GraphiQL sets inline styles and has its fonts inlined as data: URLs.
        return Response(GRAPHIQL_PAGE, mimetype="text/html", headers={
            "Content-Security-Policy": "default-src 'self'; script-src 'self'; "
                                       "style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
                                       "font-src 'self' data:; frame-ancestors 'none'"})

    @http("GET", "/graphql/schema.graphql")
    def schema_sdl(self, request):
        """The schema as SDL, for code generators and API test tools."""
        return Response(SCHEMA_SDL, mimetype="text/plain", headers={
            "Cache-Control": "public, max-age=300"})

    @http("GET", "/health")
    def liveness(self, request):
        return self._json({"status": "ok"})

    def _json(self, payload, status=200):
        response = Response(json.dumps(payload, default=str), status=status,
                            mimetype="application/json")
        response.headers[CORRELATION_HEADER] = structlog.contextvars.get_contextvars().get(
            CORRELATION_KEY, "")
        return response


def graphiql_enabled(config, environ=None):
    """Whether GET /graphql serves GraphiQL: the setting GRAPHIQL, by default on in
    development and off in production."""
    return settings.flag(config, "GRAPHIQL", not settings.is_production(environ),
                         environ=environ)


# Calls are confirmed by the broker within a second or sent once more on a fresh
# connection, and fail at once while the broker is away (common/transport.py).
for _service in settings.SERVICE_NAMES:
    setattr(GatewayService, _service, ExpiringRpcProxy(_service))
