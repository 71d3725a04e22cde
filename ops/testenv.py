"""Makes the test environment ready: a broker that answers and its management API (the tests
create a throwaway virtual host per run through it)."""
import os
import sys

from common.config import DEFAULT_AMQP_URI
from ops.broker import BrokerMissing, ensure_broker, ensure_management


def main():
    amqp = os.environ.get("AMQP_URI", DEFAULT_AMQP_URI)
    try:
        ensure_broker(amqp)
        ensure_management(amqp)
    except BrokerMissing as problem:
        print(problem, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
