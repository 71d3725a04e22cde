"""Keys for personal data: encryption at rest, keyed lookup hashes and document signing.

Settings (environment; never in a config file or the repository):

- ``MANTELZORG_DATA_KEY``: AES-256-GCM keys as ``<key id>:<base64 of 32 bytes>``, several
  separated by commas. The first encrypts; every one decrypts. Rotation: put a new key first,
  keep the old ones behind it until every stored value has been re-encrypted, then drop them.
  Each ciphertext records the id of the key that made it.
- ``MANTELZORG_LOOKUP_KEY``: base64 of the HMAC-SHA256 key for lookup hashes (a BSN is found
  by its keyed hash, never by its value). Kept apart from the data key and not rotated:
  some hashed values (verification codes) are not stored in any other form, so their
  hashes cannot be recomputed under a new key.
- ``MANTELZORG_SESSION_KEY``: AES-256-GCM keys of the gateway's web sessions, written and
  rotated like ``MANTELZORG_DATA_KEY`` (the first seals new session cookies). Every gateway
  replica needs the same keys.
- ``MANTELZORG_SIGNING_KEY`` (Ed25519 private key, PEM) with ``MANTELZORG_SIGNING_KEY_ID``:
  signs documents that others verify offline. ``MANTELZORG_SIGNING_PUBLIC_KEYS`` may list
  earlier public keys (``<key id>:<base64url of 32 bytes>``, comma separated) that are still
  published so that documents signed before a rotation keep verifying.

Each process is given only the keys it uses (``PROCESS_KEYS``), each its own: the fund's data
and lookup keys are not the declaration's, and only the declaration holds the signing key;
the registry and the campaign hold only a data key of their own, for the answers they keep for
retried requests. Deployments (deploy/k8s, docker-compose.yml) give
each process exactly these, which tests/unit/test_secrets.py checks.

When a setting is unset in development, a key is generated once and kept in the data folder
(``<data dir>/keys/<name>.json``, readable by the owner only), so that ``make run`` and the
tests work without configuration. With ``MANTELZORG_ENV=production`` (or a ``MONGO_URI``) a
missing key stops the service at start instead.
"""
import base64
import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from nameko.extensions import DependencyProvider

from common import config as settings


def _b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text):
    text = text.strip()
    return base64.urlsafe_b64decode(text.replace("+", "-").replace("/", "_") + "=" * (-len(text) % 4))


class DataCipher:
    """AES-GCM with key ids. ``keys`` is an ordered list of (key id, 32-byte key)."""

    def __init__(self, keys):
        if not keys:
            raise ValueError("at least one data key is needed")
        for kid, key in keys:
            if len(key) != 32:
                raise ValueError(f"data key {kid} must be 32 bytes")
        self.current_id = keys[0][0]
        self.keys = {kid: AESGCM(key) for kid, key in keys}

    def encrypt(self, value, context=""):
        """A JSON-able value as {kid, nonce, ct}; ``context`` (e.g. the record id) is bound
        to the ciphertext, so it cannot be moved to another record."""
        nonce = secrets.token_bytes(12)
        plain = json.dumps(value, separators=(",", ":")).encode()
        sealed = self.keys[self.current_id].encrypt(nonce, plain, context.encode())
        return {"kid": self.current_id, "nonce": _b64(nonce), "ct": _b64(sealed)}

    def decrypt(self, sealed, context=""):
        try:
            key = self.keys[sealed["kid"]]
        except KeyError:
            raise LookupError(f"data key {sealed.get('kid')!r} is not configured") from None
        plain = key.decrypt(_unb64(sealed["nonce"]), _unb64(sealed["ct"]), context.encode())
        return json.loads(plain)

    def needs_rotation(self, sealed):
        return sealed.get("kid") != self.current_id


class KeyedHash:
    """HMAC-SHA256 for looking values up without storing them."""

    def __init__(self, key):
        if len(key) < 32:
            raise ValueError("the lookup key must be at least 32 bytes")
        self.key = key

    def __call__(self, *parts):
        message = "\x1f".join(str(p) for p in parts).encode()
        return hmac.new(self.key, message, hashlib.sha256).hexdigest()

    @staticmethod
    def same(left, right):
        return hmac.compare_digest(str(left or ""), str(right or ""))


class Signer:
    """Ed25519 key pair plus the public keys still published after a rotation."""

    def __init__(self, private_key, key_id, earlier_public=()):
        self.private_key = private_key
        self.key_id = key_id
        self.public_keys = {key_id: private_key.public_key(), **dict(earlier_public)}

    def jwks(self):
        return {"keys": [
            {"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": kid,
             "x": _b64(key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))}
            for kid, key in self.public_keys.items()]}


# --- loading from the environment, with development keys per data folder ----------------

def _dev_secret(config, environ, variable):
    """A development secret kept in the data folder; made on first use. Refused in
    production and with a real database (MONGO_URI): every replica would make its own key
    and could not read the others' data."""
    if settings.is_production(environ):
        raise settings.missing_in_production(variable, "keys are generated in development only")
    if settings.mongo_uri(config):
        raise settings.SettingsError(f"{variable} must be set when MONGO_URI is set")
    return _kept_secret(settings.data_dir(config), variable)


def _kept_secret(folder, variable):
    """The development value of ``variable`` in the data folder ``folder``, made there by
    the first process to ask."""
    name, make = _DEVELOPMENT_KEYS[variable]
    if folder == ":memory:":
        return _MEMORY.setdefault(name, make())
    path = Path(folder) / "keys" / f"{name}.json"
    if path.exists():
        return json.loads(path.read_text())["value"]
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    value = make()
    # A name of this process's own: processes starting together each write a candidate, and
    # on a shared name one removed the file another was about to link.
    temporary = path.with_name(f"{path.stem}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    with open(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as out:
        out.write(json.dumps({"value": value}))
    try:
        os.link(temporary, path)   # the first process to get here wins; others read its key
    except FileExistsError:
        pass
    temporary.unlink(missing_ok=True)
    return json.loads(path.read_text())["value"]


_MEMORY = {}


def _secret(variable, environ):
    """Keys come from the environment only, never from a config file."""
    return settings.setting(None, variable, environ=environ)


def _parse_pairs(text):
    pairs = []
    for item in (text or "").split(","):
        if item.strip():
            kid, _, value = item.strip().partition(":")
            if not kid or not value:
                raise ValueError("keys are written <key id>:<base64>")
            pairs.append((kid, _unb64(value)))
    return pairs


# --- new keys: for development here, for operators through `mantelzorg new-keys` ---------

def new_data_key(key_id):
    """One entry of MANTELZORG_DATA_KEY."""
    return f"{key_id}:{_b64(secrets.token_bytes(32))}"


def new_lookup_key():
    return _b64(secrets.token_bytes(32))


def new_signing_key():
    """PEM of a new Ed25519 private key."""
    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()).decode()


def _signing_key(pem):
    """The Ed25519 key of a PEM, also when its line breaks are written as \\n (as one line of
    an .env file holds it)."""
    private_key = serialization.load_pem_private_key(pem.replace("\\n", "\n").encode(),
                                                     password=None)
    if not isinstance(private_key, Ed25519PrivateKey):
        raise ValueError("the signing key must be an Ed25519 key")
    return private_key


def signing_public_key(pem):
    """(key id, base64url public key) of a signing key: what MANTELZORG_SIGNING_KEY_ID
    defaults to, and its entry for MANTELZORG_SIGNING_PUBLIC_KEYS after a rotation."""
    raw = _signing_key(pem).public_key().public_bytes(serialization.Encoding.Raw,
                                                      serialization.PublicFormat.Raw)
    return "ed-" + hashlib.sha256(raw).hexdigest()[:16], _b64(raw)


def _cipher(config, environ, variable):
    text = _secret(variable, environ) or _dev_secret(config, environ, variable)
    return DataCipher(_parse_pairs(text))


def data_cipher(config=None, environ=None):
    return _cipher(config, environ, "MANTELZORG_DATA_KEY")


def session_cipher(config=None, environ=None):
    """Seals the gateway's session cookies; a key of its own, so that a web session key never
    opens stored personal data."""
    return _cipher(config, environ, "MANTELZORG_SESSION_KEY")


def keyed_hash(config=None, environ=None):
    text = _secret("MANTELZORG_LOOKUP_KEY", environ) or _dev_secret(
        config, environ, "MANTELZORG_LOOKUP_KEY")
    return KeyedHash(_unb64(text))


def signer(config=None, environ=None):
    pem = _secret("MANTELZORG_SIGNING_KEY", environ)
    key_id = _secret("MANTELZORG_SIGNING_KEY_ID", environ)
    if not pem:
        pem = _dev_secret(config, environ, "MANTELZORG_SIGNING_KEY")
    key_id = key_id or signing_public_key(pem)[0]
    private_key = _signing_key(pem)
    earlier = [(kid, Ed25519PublicKey.from_public_bytes(raw))
               for kid, raw in _parse_pairs(_secret("MANTELZORG_SIGNING_PUBLIC_KEYS", environ))]
    return Signer(private_key, key_id, earlier)


DATA_KEY, LOOKUP_KEY = "MANTELZORG_DATA_KEY", "MANTELZORG_LOOKUP_KEY"
SIGNING_KEY, SESSION_KEY = "MANTELZORG_SIGNING_KEY", "MANTELZORG_SESSION_KEY"
KEY_SETTINGS = (DATA_KEY, LOOKUP_KEY, SIGNING_KEY)

# The keys each process is given, and no other; a key setting of one process is never the
# same secret as another's (a stolen fund key opens nothing of the declaration's).
PROCESS_KEYS = {
    "registry": (DATA_KEY,),                     # the answers it keeps for retried requests
    "declaration": (DATA_KEY, LOOKUP_KEY, SIGNING_KEY),
    "travel_costs": (DATA_KEY, LOOKUP_KEY),      # claims' accounts; the claimant's BSN hash
    "campaign": (DATA_KEY,),                     # the answers it keeps for retried requests
    "notifications": (DATA_KEY, LOOKUP_KEY),     # the messages and e-mails; their owner's hash
    "gateway": (DATA_KEY, LOOKUP_KEY, SESSION_KEY),   # idempotent answers; sessions
}


class Keys:
    """The kinds of key of a service (``needs``: some of KEY_SETTINGS), loaded once per
    process; a kind it does not need is None."""

    def __init__(self, config=None, environ=None, needs=KEY_SETTINGS):
        settings.require_in_production(needs, "keys are generated in development only",
                                       environ)
        self.cipher = data_cipher(config, environ) if DATA_KEY in needs else None
        self.hash = keyed_hash(config, environ) if LOOKUP_KEY in needs else None
        self.signer = signer(config, environ) if SIGNING_KEY in needs else None


class ServiceKeys(DependencyProvider):
    """Injects the service's Keys: those PROCESS_KEYS gives it (see the module's description
    for the settings)."""

    def setup(self):
        needs = PROCESS_KEYS[self.container.service_name]
        with settings.stop_if_misconfigured():
            self.keys = Keys(self.container.config, needs=needs)

    def get_dependency(self, worker_ctx):
        return self.keys


# --- the keys of signed calls (common/calls.py) --------------------------------------------
# Each signer of calls has a private key of its own; the services hold only the public keys.

CALL_SIGNERS = ("gateway", "operator")


def call_key_setting(issuer):
    return f"MANTELZORG_{issuer.upper()}_CALL_KEY"


def call_public_key_setting(issuer):
    return f"MANTELZORG_{issuer.upper()}_CALL_PUBLIC_KEY"


def call_signing_key(issuer, config=None, environ=None):
    """The private key ``issuer`` (the gateway, the operator command) signs its calls with."""
    variable = call_key_setting(issuer)
    pem = _secret(variable, environ) or _dev_secret(config, environ, variable)
    return _signing_key(pem)


def call_public_keys(config=None, environ=None):
    """{issuer: Ed25519 public key} of every signer of calls. In development, where every
    process shares the data folder, taken from the development key of the signer."""
    keys = {}
    for issuer in CALL_SIGNERS:
        text = _secret(call_public_key_setting(issuer), environ)
        if text:
            keys[issuer] = Ed25519PublicKey.from_public_bytes(_unb64(text))
        else:
            if settings.is_production(environ):
                raise settings.missing_in_production(call_public_key_setting(issuer),
                                                     "calls are verified with it")
            keys[issuer] = call_signing_key(issuer, config, environ).public_key()
    return keys


def call_public_key_text(pem):
    """The value of MANTELZORG_<SIGNER>_CALL_PUBLIC_KEY for a private key."""
    return signing_public_key(pem)[1]


# The development keys by their setting: (the file's name in <data dir>/keys, how one is made).
_DEVELOPMENT_KEYS = {
    DATA_KEY: ("data-key", lambda: new_data_key("dev1")),
    SESSION_KEY: ("session-key", lambda: new_data_key("dev1")),
    LOOKUP_KEY: ("lookup-key", new_lookup_key),
    SIGNING_KEY: ("signing-key", new_signing_key),
    **{call_key_setting(issuer): (f"{issuer}-call-key", new_signing_key)
       for issuer in CALL_SIGNERS},
}


def development_keys(folder):
    """Every development key of the data folder ``folder`` by its setting (made there when
    missing), with the public keys of the signers of calls: for processes that are given a
    MONGO_URI in development (the launcher's store as a process), which make no key
    themselves. The same values for every replica, so replicas read each other's data."""
    keys = {variable: _kept_secret(folder, variable) for variable in _DEVELOPMENT_KEYS}
    for issuer in CALL_SIGNERS:
        keys[call_public_key_setting(issuer)] = call_public_key_text(keys[call_key_setting(issuer)])
    return keys
