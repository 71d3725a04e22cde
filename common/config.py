"""Environment settings shared by every process of the platform."""
import os
from pathlib import Path

DEFAULT_AMQP_URI = "amqp://guest:guest@127.0.0.1:5672/"


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
