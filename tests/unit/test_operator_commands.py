"""`mantelzorg probe` (the containers' health check) and `mantelzorg new-keys` (keys for a new
installation or a rotation)."""
import threading
from pathlib import Path
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
    assert cli.main(["new-keys", "--data-key-id", "k2", "--process", "declaration"]) == 0
    lines = dict(line.split("=", 1) for line in capsys.readouterr().out.splitlines()
                 if not line.startswith("#"))
    environ = {name: value.strip('"') for name, value in lines.items()}
    assert environ["MANTELZORG_DATA_KEY"].startswith("k2:")
    keys = crypto.Keys(environ=environ)
    sealed = keys.cipher.encrypt("123456782", "bsn")
    assert keys.cipher.decrypt(sealed, "bsn") == "123456782"
    assert keys.signer.key_id == environ["MANTELZORG_SIGNING_KEY_ID"]
    assert "\n" not in lines["MANTELZORG_SIGNING_KEY"]      # one line of an .env file


def test_new_keys_for_env_give_each_process_keys_of_its_own(capsys):
    assert cli.main(["new-keys"]) == 0
    lines = dict(line.split("=", 1) for line in capsys.readouterr().out.splitlines()
                 if not line.startswith("#"))
    calls = {setting(issuer) for issuer in crypto.CALL_SIGNERS
             for setting in (crypto.call_key_setting, crypto.call_public_key_setting)}
    assert set(lines) == calls | {
        f"{process.upper()}_{kind}" + suffix
        for process, kinds in crypto.PROCESS_KEYS.items() for kind in kinds
        for suffix in ("", "_ID") if suffix == "" or kind.endswith("SIGNING_KEY")}
    assert len(set(lines.values())) == len(lines)   # no two processes share a key
    example = (Path(__file__).resolve().parents[2] / ".env.example").read_text()
    assert all(f"\n{name}=" in example for name in lines)
    # the gateway's and the operator's keys of signed calls, and the public keys to check them
    environ = {name: value.strip('"') for name, value in lines.items()}
    verifying = crypto.call_public_keys(environ={**environ, "MANTELZORG_ENV": "production"})
    for issuer in crypto.CALL_SIGNERS:
        private = crypto.call_signing_key(issuer, environ=environ)
        assert "\n" not in lines[crypto.call_key_setting(issuer)]
        verifying[issuer].verify(private.sign(b"call"), b"call")


def test_new_tls_certificates_are_signed_by_their_authority(tmp_path):
    from cryptography import x509

    assert cli.main(["new-tls-certificates", str(tmp_path)]) == 0
    authority = x509.load_pem_x509_certificate((tmp_path / "ca.crt").read_bytes())
    for server in ("rabbitmq", "mongo"):
        certificate = x509.load_pem_x509_certificate((tmp_path / f"{server}.crt").read_bytes())
        certificate.verify_directly_issued_by(authority)
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        assert server in names.value.get_values_for_type(x509.DNSName)
        assert b"PRIVATE KEY" in (tmp_path / f"{server}.pem").read_bytes()
