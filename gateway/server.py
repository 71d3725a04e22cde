"""The gateway's HTTP server: nameko's, with every answer JSON (also for a method or path it
has no route for, where nameko would answer an HTML page) and CORS for the partners' browser
applications.

CORS: ``CORS_ALLOWED_ORIGINS`` (``GATEWAY_CORS_ALLOWED_ORIGINS``) lists the origins, such as
``https://portal.example.nl``, separated by commas; none by default, ``*`` for any. A
preflight (``OPTIONS`` with ``Access-Control-Request-Method``) from an allowed origin is
answered with what the browser may send; from another origin with 403."""
import json

from nameko.web.handlers import HttpRequestHandler
from nameko.web.server import WebServer, WsgiApp
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.wrappers import Request, Response

from common.logging import CORRELATION_HEADER, correlation_from_headers, get_logger
from common.service import SignatureReadOnce
from gateway.errors import error_entry

ALLOWED_HEADERS = "Authorization, Content-Type, Idempotency-Key, X-Correlation-ID"
EXPOSED_HEADERS = "X-Correlation-ID"
PREFLIGHT_MAX_AGE_SECONDS = 600


def json_response(payload, status=200, headers=None):
    return Response(json.dumps(payload, default=str), status=status, headers=headers,
                    mimetype="application/json")


def error_response(message, code, status, headers=None):
    return json_response({"errors": [error_entry(message, code)]}, status, headers)


def allowed_origins(setting):
    """The CORS setting as a set of origins ('*' for any)."""
    if not setting:
        return frozenset()
    return frozenset(origin.strip().rstrip("/") for origin in str(setting).split(",")
                     if origin.strip())


class JsonWsgiApp(WsgiApp):
    def __init__(self, server, origins):
        super().__init__(server)
        self.origins = origins

    def __call__(self, environ, start_response):
        request = Request(environ, shallow=True)
        adapter = self.url_map.bind_to_environ(environ)
        cors = self._cors_headers(request.headers.get("Origin"))
        if request.method == "OPTIONS":
            answer = self._answered_here(request, "options", lambda: self._options(
                request, adapter, cors))
        else:
            try:
                provider, values = adapter.match()
                request.path_values = values
                answer = provider.handle_request(request)
            except HTTPException as refused:
                answer = self._answered_here(request, "not_found", lambda: self._refusal(
                    request, refused))
        if cors:
            answer.headers.update(cors)
            answer.headers.add("Vary", "Origin")
        return answer(environ, start_response)

    def _answered_here(self, request, entrypoint, answer):
        """An answer without a worker: it gets the access line and correlation id a worker's
        answer has."""
        try:
            response = answer()
        except HTTPException as refused:
            response = self._refusal(request, refused)
        correlation_id = correlation_from_headers(request.headers)
        response.headers[CORRELATION_HEADER] = correlation_id
        get_logger().info("entrypoint.completed", entrypoint=entrypoint,
                          correlation_id=correlation_id, outcome="success",
                          http_status=response.status_code)
        return response

    @staticmethod
    def _refusal(request, refused):
        if isinstance(refused, NotFound):
            return error_response("no such resource", "NOT_FOUND", 404)
        if isinstance(refused, MethodNotAllowed):
            return error_response("this method is not allowed here", "BAD_USER_INPUT", 405,
                                  {"Allow": ", ".join(refused.valid_methods or ())})
        status = refused.code or 500
        return error_response(refused.name, "BAD_USER_INPUT" if status < 500 else "INTERNAL",
                              status)

    def _cors_headers(self, origin):
        if not origin or not ("*" in self.origins or origin.rstrip("/") in self.origins):
            return {}
        return {"Access-Control-Allow-Origin": origin,
                "Access-Control-Expose-Headers": EXPOSED_HEADERS}

    def _options(self, request, adapter, cors):
        methods = sorted(set(adapter.allowed_methods()) | {"OPTIONS"})
        if methods == ["OPTIONS"]:
            raise NotFound()
        allow = ", ".join(methods)
        if not request.headers.get("Access-Control-Request-Method"):
            return json_response({"methods": methods}, headers={"Allow": allow})
        if not cors:
            return error_response("this origin may not call the API from a browser",
                                  "FORBIDDEN", 403)
        return json_response({"methods": methods}, headers={
            "Allow": allow, "Access-Control-Allow-Methods": allow,
            "Access-Control-Allow-Headers": ALLOWED_HEADERS,
            "Access-Control-Max-Age": str(PREFLIGHT_MAX_AGE_SECONDS)})


class JsonWebServer(WebServer):
    def get_wsgi_app(self):
        return JsonWsgiApp(self, allowed_origins(self.container.config.get("CORS_ALLOWED_ORIGINS")))


class JsonHttpRequestHandler(SignatureReadOnce, HttpRequestHandler):
    server = JsonWebServer()

    def response_from_exception(self, exc):
        # nameko's own answer is text with the exception's message in it.
        return error_response("internal error", "INTERNAL", 500)


http = JsonHttpRequestHandler.decorator
