"""`mantelzorg probe` (the containers' health check) and `mantelzorg new-keys` (keys for a new
installation or a rotation)."""
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from common import crypto
from ops import cli


class MetricsPage(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/metrics" else 404)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def metrics_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), MetricsPage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_probe_asks_the_processes_own_metrics_address(metrics_server, monkeypatch):
    monkeypatch.setenv("REGISTRY_WEB_ADDRESS", f"0.0.0.0:{metrics_server}")
    assert cli.main(["probe", "registry"]) == 0
    monkeypatch.setenv("CAMPAIGN_WEB_ADDRESS", "127.0.0.1:1")    # nothing listens there
    assert cli.main(["probe", "campaign"]) == 1


def test_new_keys_are_usable_by_the_services(capsys):
    assert cli.main(["new-keys", "--data-key-id", "k2"]) == 0
    lines = dict(line.split("=", 1) for line in capsys.readouterr().out.splitlines()
                 if not line.startswith("#"))
    environ = {name: value.strip('"') for name, value in lines.items()}
    assert environ["MANTELZORG_DATA_KEY"].startswith("k2:")
    keys = crypto.Keys(environ=environ)
    sealed = keys.cipher.encrypt("123456782", "bsn")
    assert keys.cipher.decrypt(sealed, "bsn") == "123456782"
    assert keys.signer.key_id == environ["MANTELZORG_SIGNING_KEY_ID"]
    assert "\n" not in lines["MANTELZORG_SIGNING_KEY"]      # one line of an .env file
    # the gateway's and the operator's keys of signed calls, and the public keys to check them
    verifying = crypto.call_public_keys(environ={**environ, "MANTELZORG_ENV": "production"})
    for issuer in crypto.CALL_SIGNERS:
        private = crypto.call_signing_key(issuer, environ=environ)
        assert "\n" not in lines[crypto.call_key_setting(issuer)]
        verifying[issuer].verify(private.sign(b"call"), b"call")
