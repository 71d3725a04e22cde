"""The development store as a process of its own (``MANTELZORG_STORE=process``):
SecantusDB's server on the port the launcher chose, its files in ``<data dir>/store``, every
commit synced to disk as the embedded store does. The launcher starts it before the
services and stops it after them, as mongod runs beside them in production.

    python -m ops.store --port 27117 --storage-path .data/store
"""
import argparse
import signal

from common.storage import EmbeddedServer

STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


def uri(port):
    """What the services are given as MONGO_URI. Without retryable writes, as the embedded
    store is used: the server remembers every retryable write and scans that memory on each
    write, and a one-process store has no failover for a retry to help against."""
    return f"mongodb://127.0.0.1:{port}/?retryWrites=false"


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m ops.store", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--storage-path", required=True)
    args = parser.parse_args(argv)
    # Blocked before the server's threads start (they inherit the mask), so that only the
    # wait below takes them and the server stops cleanly, its files closed.
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    server = EmbeddedServer(args.storage_path, port=args.port)
    try:
        signal.sigwait(STOP_SIGNALS)
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
