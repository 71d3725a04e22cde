"""Files the browser loads, all from the gateway itself: the NL Design System's CSS and
GraphiQL's scripts as npm installed them (``gateway/web/package-lock.json``; ``make``
runs ``npm ci``), and the few files of our own in ``static/``. Only the files listed here are
served, never a path a request makes up."""
from pathlib import Path

from werkzeug.wrappers import Response

from common.logging import get_logger

WEB = Path(__file__).parent
NODE_MODULES = WEB / "node_modules"
STATIC = WEB / "static"

FILES = {
    "utrecht/design-tokens.css": NODE_MODULES / "@utrecht/design-tokens/dist/index.css",
    "utrecht/components.css": NODE_MODULES / "@utrecht/component-library-css/dist/index.css",
    "graphiql/graphiql.min.css": NODE_MODULES / "graphiql/graphiql.min.css",
    "graphiql/graphiql.min.js": NODE_MODULES / "graphiql/graphiql.min.js",
    "graphiql/react.production.min.js": NODE_MODULES / "react/umd/react.production.min.js",
    "graphiql/react-dom.production.min.js":
        NODE_MODULES / "react-dom/umd/react-dom.production.min.js",
    "graphiql/start.js": STATIC / "graphiql-start.js",
    "site.css": STATIC / "site.css",
}
TYPES = {".css": "text/css", ".js": "text/javascript"}

log = get_logger()
_loaded = {}


def response(name):
    """The file's answer, or None when it is not one of ours."""
    path = FILES.get(name)
    if path is None:
        return None
    if name not in _loaded:
        try:
            _loaded[name] = path.read_bytes()
        except FileNotFoundError:
            log.error("web.asset_missing", asset=name, hint="run make (npm ci in gateway/web)")
            return None
    return Response(_loaded[name], mimetype=TYPES[path.suffix], headers={
        "Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"})
