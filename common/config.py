"""Environment settings shared by every process of the platform.

``MANTELZORG_ENV`` is ``development`` (the default: ``make run``, the tests) or
``production``. Only development has the embedded store, generated keys and development
sign-in; in production a process that lacks its database, a key or the identity provider's
settings stops at start and says which setting is missing.
"""
import contextlib
import os
import sys
from pathlib import Path

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


def amqp_uri(config=None):
    value = (config or {}).get("AMQP_URI") or os.environ.get("AMQP_URI")
    return value or DEFAULT_AMQP_URI


def mongo_uri(config=None):
    """The MongoDB server to use; empty means: run the embedded one."""
    value = (config or {}).get("MONGO_URI") or os.environ.get("MONGO_URI") or ""
    return value.strip()


def data_dir(config=None):
    """Where the embedded document store keeps its files (":memory:" in tests)."""
    value = (config or {}).get("DATA_DIR") or os.environ.get("MANTELZORG_DATA_DIR") or ".data"
    if value == ":memory:":
        return value
    return str(Path(value).resolve())


def int_setting(config, key, default):
    value = (config or {}).get(key)
    if value in (None, ""):
        value = os.environ.get(key, default)
    return int(value)
