"""The gateway's HTTP server: nameko's, with every answer JSON (also for a method or path it
has no route for, where nameko would answer an HTML page), CORS for the partners' browser
applications, and bounds on slow clients.

Slow clients: a connection has ``HEADER_TIMEOUT_SECONDS`` (``GATEWAY_HEADER_TIMEOUT_SECONDS``,
default 10) for the request line and headers of each request, idle keep-alive time included,
and ``BODY_TIMEOUT_SECONDS`` (``GATEWAY_BODY_TIMEOUT_SECONDS``, default 30) for its body, each
in all, however slowly the bytes trickle in; then it is answered 408 and closed. The body is
read in full (at most MAX_BODY_BYTES and one byte) by the connection's own green thread before
a worker takes the request, so a slow sender never holds one of the ``max_workers``. At most
``MAX_CONNECTIONS`` (``GATEWAY_MAX_CONNECTIONS``, default 1000) connections are open at once;
one more is answered 503 and closed.

CORS: ``CORS_ALLOWED_ORIGINS`` (``GATEWAY_CORS_ALLOWED_ORIGINS``) lists the origins, such as
``https://portal.example.nl``, separated by commas; none by default, ``*`` for any. A
preflight (``OPTIONS`` with ``Access-Control-Request-Method``) from an allowed origin is
answered with what the browser may send; from another origin with 403."""
import io
import json
from functools import partial

import eventlet
from eventlet.semaphore import Semaphore
from nameko.web.handlers import HttpRequestHandler
from nameko.web.server import HttpOnlyProtocol, WebServer, WsgiApp
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.wrappers import Request, Response

from common import config as settings
from common.logging import CORRELATION_HEADER, correlation_from_headers, get_logger
from common.calls import SignatureReadOnce
from gateway.errors import error_entry

MAX_BODY_BYTES = 1024 * 1024
HEADER_TIMEOUT_SECONDS = 10
BODY_TIMEOUT_SECONDS = 30
MAX_CONNECTIONS = 1000
_CLOSING = b"Connection: close\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"

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
                # Bound now: the name of an except clause is gone once the clause ends.
                answer = self._answered_here(request, "not_found", lambda error=refused: (
                    self._refusal(request, error)))
        if cors:
            answer.headers.update(cors)
            answer.headers.add("Vary", "Origin")
        # A browser takes every answer as the type it says it is (JSON stays JSON).
        answer.headers["X-Content-Type-Options"] = "nosniff"
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


def _closing_answer(status, message, code):
    """A whole HTTP answer that closes the connection, for one that never reached the app."""
    body = json.dumps({"errors": [error_entry(message, code)]}).encode()
    return b"HTTP/1.1 " + status.encode() + b"\r\n" + _CLOSING % (len(body), body)


class _TooSlow(Exception):
    """A client took longer than its time for the headers or the body."""


class BoundedHttpProtocol(HttpOnlyProtocol):
    """eventlet's HTTP protocol with a deadline for each request's headers and one for its
    body; the body is read here, before the app (and so a worker) sees the request."""

    header_timeout = HEADER_TIMEOUT_SECONDS
    body_timeout = BODY_TIMEOUT_SECONDS
    _deadline = None

    def handle_one_request(self):
        self.raw_requestline = b""
        self._deadline = eventlet.Timeout(self.header_timeout, _TooSlow)
        try:
            super().handle_one_request()
        except _TooSlow:
            self.close_connection = 1
            if self.raw_requestline:   # a request had begun (not an idle keep-alive)
                self._answer_too_slow()
        finally:
            self._deadline.cancel()

    def _answer_too_slow(self):
        try:
            self.wfile.write(_closing_answer("408 Request Timeout",
                                             "the request came in too slowly", "BAD_USER_INPUT"))
            self.wfile.flush()
        except OSError:
            pass

    def handle_one_response(self):
        self._deadline.cancel()
        request = self.environ["eventlet.input"]
        if request.chunked_input or request.content_length:
            self._deadline = eventlet.Timeout(self.body_timeout, _TooSlow)
            body = request.read(MAX_BODY_BYTES + 1)
            self._deadline.cancel()
            if len(body) > MAX_BODY_BYTES:
                self.close_connection = 1   # the rest is never read
            self.environ["wsgi.input"] = io.BytesIO(body)
            self.environ["CONTENT_LENGTH"] = str(len(body))
        super().handle_one_response()


class JsonWebServer(WebServer):
    def __init__(self):
        super().__init__()
        self._connections = None

    def get_wsgi_app(self):
        return JsonWsgiApp(self, allowed_origins(self.container.config.get("CORS_ALLOWED_ORIGINS")))

    def get_wsgi_server(self, sock, wsgi_app, protocol=BoundedHttpProtocol, debug=False):
        config = self.container.config
        protocol = type("ConfiguredHttpProtocol", (protocol,), {
            "header_timeout": settings.float_setting(config, "HEADER_TIMEOUT_SECONDS",
                                                     HEADER_TIMEOUT_SECONDS),
            "body_timeout": settings.float_setting(config, "BODY_TIMEOUT_SECONDS",
                                                   BODY_TIMEOUT_SECONDS)})
        self._connections = Semaphore(settings.int_setting(config, "MAX_CONNECTIONS",
                                                           MAX_CONNECTIONS))
        return super().get_wsgi_server(sock, wsgi_app, protocol, debug)

    def run(self):
        while self._is_accepting:
            sock, address = self._sock.accept()
            if not self._connections.acquire(blocking=False):
                eventlet.spawn_n(self._refuse, sock)
                continue
            sock.settimeout(self._serv.socket_timeout)
            self.container.spawn_managed_thread(partial(self._serve, sock, address))

    def _serve(self, sock, address):
        try:
            self.process_request(sock, address)
        finally:
            self._connections.release()

    @staticmethod
    def _refuse(sock):
        try:
            sock.settimeout(1)
            sock.sendall(_closing_answer("503 Service Unavailable",
                                         "too many connections; try again later", "UNAVAILABLE"))
        except OSError:
            pass
        finally:
            sock.close()


class JsonHttpRequestHandler(SignatureReadOnce, HttpRequestHandler):
    server = JsonWebServer()

    def response_from_exception(self, exc):
        # nameko's own answer is text with the exception's message in it.
        return error_response("internal error", "INTERNAL", 500)


http = JsonHttpRequestHandler.decorator
