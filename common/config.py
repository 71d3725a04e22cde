"""Reading a setting, and the names every process of the platform shares.

Every setting is read through ``setting`` (or its typed variants): first the process's
nameko config (its ``config.yml``, whose ``${VAR:default}`` nameko has filled in from the
environment), then the environment variable, then the default. Secrets have no place in a
config file: they are read with ``config=None``, from the environment alone.
"""
import os
from pathlib import Path

DEFAULT_AMQP_URI = "amqp://guest:guest@127.0.0.1:5672/"

# The platform's services, by the name each answers to on the broker (and the folder it
# lives in under services/). The launcher, the gateway's RPC proxies and its health field
# all read this one list.
SERVICE_NAMES = ("registry", "declaration", "travel_costs", "campaign")


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


def mongo_uri(config=None):
    """The MongoDB server to use; empty means: run the embedded one."""
    return setting(config, "MONGO_URI", "")


def data_dir(config=None):
    """Where the embedded document store keeps its files (":memory:" in tests)."""
    value = setting(config, "DATA_DIR", ".data", variable="MANTELZORG_DATA_DIR")
    if value == ":memory:":
        return value
    return str(Path(value).resolve())
