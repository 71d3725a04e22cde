"""MANTELZORG_ENV=production: a process without its database, keys or identity provider stops
at start and names what is missing; what only development has is refused."""
import base64
import os
import subprocess
import sys

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from common import config as settings
from common.crypto import (CALL_SIGNERS, Keys, call_key_setting, call_public_key_setting,
                           call_public_key_text, data_cipher, keyed_hash, signer)
from common.storage import DocumentStore
from gateway.auth import TokenVerifier
from gateway.web.signin import require_identity_provider_in_production
from ops import cli
from ops.platform import PROCESSES, ROOT

IDENTITY_PROVIDER = {"MANTELZORG_JWT_JWKS_URL": "https://login.example.nl/jwks.json",
                     "MANTELZORG_JWT_ISSUER": "https://login.example.nl/",
                     "MANTELZORG_JWT_AUDIENCE": "mantelzorg-gateway"}


def production_keys():
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()).decode()
    return {"MANTELZORG_DATA_KEY": "k1:" + base64.urlsafe_b64encode(os.urandom(32)).decode(),
            "MANTELZORG_LOOKUP_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
            "MANTELZORG_SIGNING_KEY": pem,
            # the signed calls: one key pair serves both signers here
            **{call_key_setting(issuer): pem for issuer in CALL_SIGNERS},
            **{call_public_key_setting(issuer): call_public_key_text(pem)
               for issuer in CALL_SIGNERS}}


@pytest.fixture
def production(monkeypatch):
    for name in ("MONGO_URI", *IDENTITY_PROVIDER, *production_keys(), "MANTELZORG_JWT_SECRET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MANTELZORG_ENV", "production")


def test_development_is_the_default_and_nothing_else_than_the_two_is_accepted():
    assert settings.environment({}) == "development"
    assert settings.is_production({"MANTELZORG_ENV": " Production "})
    with pytest.raises(settings.SettingsError, match="development or production"):
        settings.environment({"MANTELZORG_ENV": "staging"})


def test_production_has_no_embedded_store(production):
    with pytest.raises(settings.SettingsError, match="set MONGO_URI; the embedded store"):
        DocumentStore("mantelzorg_registry", "", ":memory:")


def test_development_runs_the_embedded_store(monkeypatch):
    monkeypatch.delenv("MANTELZORG_ENV", raising=False)
    store = DocumentStore("mantelzorg_probe", "", ":memory:")
    try:
        assert store.ping()
    finally:
        store.close()


@pytest.mark.parametrize("missing", ["MANTELZORG_DATA_KEY", "MANTELZORG_LOOKUP_KEY",
                                     "MANTELZORG_SIGNING_KEY"])
def test_production_generates_no_key(production, missing):
    environ = {**os.environ, **production_keys()}
    del environ[missing]
    config = {"DATA_DIR": ":memory:"}
    with pytest.raises(settings.SettingsError, match=f"set {missing}; keys are generated"):
        Keys(config, environ)
    load = {"MANTELZORG_DATA_KEY": data_cipher, "MANTELZORG_LOOKUP_KEY": keyed_hash,
            "MANTELZORG_SIGNING_KEY": signer}[missing]
    with pytest.raises(settings.SettingsError, match=missing):
        load(config, environ)


def test_production_with_every_key_loads_them(production):
    keys = Keys({"DATA_DIR": ":memory:"}, {**os.environ, **production_keys()})
    assert keys.cipher.decrypt(keys.cipher.encrypt({"a": 1}, "id"), "id") == {"a": 1}


def test_development_generates_its_keys(monkeypatch, tmp_path):
    monkeypatch.delenv("MANTELZORG_ENV", raising=False)
    environ = {name: value for name, value in os.environ.items()
               if name not in production_keys() and name != "MONGO_URI"}
    keys = Keys({"DATA_DIR": str(tmp_path)}, environ)
    assert keys.hash("x") and (tmp_path / "keys" / "data-key.json").exists()


@pytest.mark.parametrize("missing", list(IDENTITY_PROVIDER))
def test_production_needs_the_identity_provider(production, missing):
    environ = {"MANTELZORG_ENV": "production", **IDENTITY_PROVIDER}
    del environ[missing]
    with pytest.raises(settings.SettingsError, match=f"set {missing}; tokens come from"):
        TokenVerifier(environ)


def test_production_has_no_development_sign_in(production):
    verifier = TokenVerifier({"MANTELZORG_ENV": "production", **IDENTITY_PROVIDER,
                              "MANTELZORG_JWT_SECRET": "a-shared-development-secret"})
    assert verifier.secret is None and verifier.jwks is not None
    assert TokenVerifier({"MANTELZORG_JWT_SECRET": "s"}).secret == "s"   # development


CAREGIVER_SIGN_IN = {"MANTELZORG_OIDC_ISSUER": "https://login.example.nl/",
                     "MANTELZORG_OIDC_CLIENT_ID": "mantelzorg",
                     "MANTELZORG_OIDC_CLIENT_SECRET": "a-client-secret",
                     "MANTELZORG_OIDC_REDIRECT_URL": "https://mantelzorg.example.nl/inloggen/terug",
                     "MANTELZORG_SESSION_KEY": "s1:" + base64.urlsafe_b64encode(bytes(32)).decode()}


@pytest.mark.parametrize("missing", list(CAREGIVER_SIGN_IN))
def test_production_has_no_development_sign_in_on_the_caregiver_pages(missing):
    environ = {"MANTELZORG_ENV": "production", **CAREGIVER_SIGN_IN}
    del environ[missing]
    named = "MANTELZORG_OIDC_ISSUER or MANTELZORG_OIDC_METADATA_URL" \
        if missing == "MANTELZORG_OIDC_ISSUER" else missing
    with pytest.raises(settings.SettingsError, match=f"set {named};"):
        require_identity_provider_in_production(environ)
    require_identity_provider_in_production({"MANTELZORG_ENV": "production",
                                             **CAREGIVER_SIGN_IN})
    require_identity_provider_in_production({})     # development: the BSN field is fine


@pytest.mark.parametrize("command", [["token", "admin"], ["run"]])
def test_production_refuses_the_development_commands(production, monkeypatch, capsys, command):
    monkeypatch.setenv("MANTELZORG_JWT_SECRET", "a-shared-development-secret")
    assert cli.main(command) == 1
    assert "for development only" in capsys.readouterr().err


@pytest.mark.parametrize("process, missing", [
    ("campaign", "MONGO_URI"),
    ("registry", "MANTELZORG_GATEWAY_CALL_PUBLIC_KEY"),
    ("gateway", "MANTELZORG_JWT_JWKS_URL, MANTELZORG_JWT_ISSUER, MANTELZORG_JWT_AUDIENCE"),
])
def test_a_process_without_its_settings_stops_at_start_with_one_clear_line(production, process,
                                                                           missing):
    started = next(p for p in PROCESSES if p.name == process)
    environ = {**os.environ, "PYTHONWARNINGS": "ignore", **production_keys(),
               **CAREGIVER_SIGN_IN}
    if process == "gateway":   # everything else it needs, so that only this is missing
        environ["MONGO_URI"] = "mongodb://127.0.0.1:1/"
    if missing.endswith("_CALL_PUBLIC_KEY"):   # it has its database, not its call keys
        environ.pop(missing)
        environ["MONGO_URI"] = "mongodb://127.0.0.1:1/"
    finished = subprocess.run(
        [sys.executable, "-m", "nameko", "run", "--config", started.config, started.target],
        cwd=ROOT, env=environ, capture_output=True, text=True, timeout=60)
    assert finished.returncode == 2
    assert f"cannot start: MANTELZORG_ENV=production: set {missing};" in finished.stderr
    assert "Traceback" not in finished.stderr


def test_graphiql_is_off_in_production_unless_an_operator_turns_it_on():
    from gateway.service import graphiql_enabled

    assert graphiql_enabled({}, environ={})                                   # development
    assert not graphiql_enabled({}, environ={"MANTELZORG_ENV": "production"})
    assert not graphiql_enabled({"GRAPHIQL": None}, environ={"MANTELZORG_ENV": "production"})
    assert graphiql_enabled({"GRAPHIQL": True}, environ={"MANTELZORG_ENV": "production"})
    assert graphiql_enabled({}, environ={"MANTELZORG_ENV": "production", "GRAPHIQL": "on"})
    assert not graphiql_enabled({"GRAPHIQL": "false"}, environ={})
