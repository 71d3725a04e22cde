"""Reading a setting, and the names every process of the platform shares.

Every setting is read through ``setting`` (or its typed variants): first the process's
nameko config (its ``config.yml``, whose ``${VAR:default}`` nameko has filled in from the
environment), then the environment variable, then the default. Secrets have no place in a
config file: they are read with ``config=None``, from the environment alone.

``MANTELZORG_ENV`` is ``development`` (the default: ``make run``, the tests) or
``production``. Only development has the embedded store, generated keys and development
sign-in; in production a process that lacks its database, a key or the identity provider's
settings stops at start and says which setting is missing.
"""
import contextlib
import os
import sys
from pathlib import Path

import yaml

DEFAULT_AMQP_URI = "amqp://guest:guest@127.0.0.1:5672/"
DEVELOPMENT, PRODUCTION = "development", "production"


class SettingsError(RuntimeError):
    """A setting the process cannot start without."""


def environment(environ=None):
    environ = os.environ if environ is None else environ
    value = (environ.get("MANTELZORG_ENV") or DEVELOPMENT).strip().lower()
    if value not in (DEVELOPMENT, PRODUCTION):
        raise SettingsError(f"MANTELZORG_ENV must be {DEVELOPMENT} or {PRODUCTION}, not {value!r}")
    return value


def is_production(environ=None):
    return environment(environ) == PRODUCTION


def missing_in_production(what, because):
    """The error a production process stops with when ``what`` is not set."""
    return SettingsError(f"MANTELZORG_ENV={PRODUCTION}: set {what}; {because}")


@contextlib.contextmanager
def stop_if_misconfigured():
    """Around a service's start-up step: a missing setting ends the process with one clear
    line on stderr and exit code 2, instead of a retry loop or a page of tracebacks."""
    try:
        yield
    except SettingsError as error:
        print(f"cannot start: {error}", file=sys.stderr, flush=True)
        os._exit(2)


def require_in_production(names, because, environ=None):
    """In production, every one of ``names`` must be set in the environment."""
    environ = os.environ if environ is None else environ
    if not is_production(environ):
        return
    missing = [name for name in names if not (environ.get(name) or "").strip()]
    if missing:
        raise missing_in_production(", ".join(missing), because)

# The platform's services, by the name each answers to on the broker (and the folder it
# lives in under services/). The launcher, the gateway's RPC proxies and its health field
# all read this one list.
SERVICE_NAMES = ("registry", "declaration", "travel_costs", "campaign", "notifications")


def _unset(value):
    return value is None or (isinstance(value, str) and not value.strip())


def setting(config, key, default=None, variable=None, environ=None):
    """``key`` from the nameko config, else the environment variable ``variable`` (the key
    itself when not given), else ``default``. An empty value counts as unset."""
    value = (config or {}).get(key)
    if _unset(value):
        value = (os.environ if environ is None else environ).get(variable or key)
    if _unset(value):
        return default
    return value.strip() if isinstance(value, str) else value


def int_setting(config, key, default, variable=None, environ=None):
    return int(setting(config, key, default, variable, environ))


def float_setting(config, key, default, variable=None, environ=None):
    return float(setting(config, key, default, variable, environ))


def amqp_uri(config=None):
    return setting(config, "AMQP_URI", DEFAULT_AMQP_URI)


def flag(config, key, default, variable=None, environ=None):
    """A yes/no setting: true, yes, on or 1 (any case) is yes; unset is ``default``."""
    value = setting(config, key, None, variable, environ)
    if value is None:
        return default
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def amqp_ssl(config=None, environ=None):
    """TLS to RabbitMQ, as nameko's ``AMQP_SSL`` takes it: None for none, else the options
    of the TLS connection (with ``amqps://`` in AMQP_URI). The environment variable holds
    them as YAML, e.g. ``{ca_certs: /etc/mantelzorg/tls/ca.crt, cert_reqs: 2,
    server_hostname: rabbitmq}``: the certificate authority, 2 for a required and checked
    certificate, the name the broker's certificate is for."""
    value = setting(config, "AMQP_SSL", None, environ=environ)
    return yaml.safe_load(value) if isinstance(value, str) else value


def mongo_tls_options(config=None, environ=None):
    """TLS to MongoDB: with ``MONGO_TLS_CA_FILE`` (the certificate authority of the
    database's certificate) every connection is TLS and checks that certificate."""
    ca_file = setting(config, "MONGO_TLS_CA_FILE", None, environ=environ)
    return {"tls": True, "tlsCAFile": ca_file} if ca_file else {}


def mongo_uri(config=None):
    """The MongoDB server to use; empty means: run the embedded one."""
    return setting(config, "MONGO_URI", "")


def data_dir(config=None):
    """Where the embedded document store keeps its files (":memory:" in tests)."""
    value = setting(config, "DATA_DIR", ".data", variable="MANTELZORG_DATA_DIR")
    if value == ":memory:":
        return value
    return str(Path(value).resolve())
