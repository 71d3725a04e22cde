"""The gateway: GraphQL over HTTP in front of the services, which it reaches over RPC."""
import json
from pathlib import Path

import structlog
from nameko.dependency_providers import Config
from nameko.rpc import RpcProxy
from nameko.web.handlers import http
from werkzeug.wrappers import Response

from common.logging import CORRELATION_HEADER, CORRELATION_KEY
from common.service import InstrumentedService
from gateway.auth import TokenVerifier
from gateway.errors import error_entry, format_error
from gateway.executor import GraphQLContext, run_query

MAX_BODY_BYTES = 1024 * 1024
GRAPHIQL_PAGE = (Path(__file__).parent / "graphiql.html").read_text()
VERIFIER = TokenVerifier()


class GatewayService(InstrumentedService):
    name = "gateway"
    config = Config()

    registry = RpcProxy("registry")
    declaration = RpcProxy("declaration")
    travel_costs = RpcProxy("travel_costs")
    campaign = RpcProxy("campaign")

    @http("POST", "/graphql")
    def graphql(self, request):
        try:
            return self._graphql(request)
        except Exception as error:   # never nameko's error page: it leaks exception text
            return self._json({"errors": [format_error(error)]}, 500)

    def _graphql(self, request):
        length = request.content_length
        if length is not None and length > MAX_BODY_BYTES:
            return self._json({"errors": [error_entry("request body over 1 MiB", "BAD_USER_INPUT")]}, 413)
        raw = request.stream.read(MAX_BODY_BYTES + 1)
        if len(raw) > MAX_BODY_BYTES:
            return self._json({"errors": [error_entry("request body over 1 MiB", "BAD_USER_INPUT")]}, 413)
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return self._json({"errors": [error_entry("the body must be a JSON object", "BAD_USER_INPUT")]}, 400)
        try:
            principal = VERIFIER.principal(request.headers.get("Authorization"))
        except Exception as error:
            return self._json({"errors": [format_error(error)]}, 401)
        timeout = float(self.config.get("RPC_TIMEOUT_SECONDS", 10))
        return self._json(run_query(body, GraphQLContext(self, principal, timeout)))

    @http("GET", "/graphql")
    def graphiql(self, request):
        return Response(GRAPHIQL_PAGE, mimetype="text/html")

    @http("GET", "/health")
    def liveness(self, request):
        return self._json({"status": "ok"})

    @http("GET,POST,PUT,PATCH,DELETE", "/<path:path>")
    def not_found(self, request, path):
        # Instead of the framework's HTML page: every answer is JSON.
        return self._json({"errors": [error_entry("no such resource", "NOT_FOUND")]}, 404)

    def _json(self, payload, status=200):
        response = Response(json.dumps(payload, default=str), status=status,
                            mimetype="application/json")
        response.headers[CORRELATION_HEADER] = structlog.contextvars.get_contextvars().get(
            CORRELATION_KEY, "")
        return response
