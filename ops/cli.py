"""``mantelzorg`` — the operator's command line. ``make run`` calls ``mantelzorg run``."""
import argparse
import json
import os
import secrets
import sys
from pathlib import Path

from common import config as settings
from common.logging import quiet_libraries
from common.messaging import declare_topology, list_dead_letters, replay_dead_letters
from gateway.auth import issue_development_token
from ops import reference
from ops.broker import BrokerMissing, ensure_broker
from ops.platform import PROCESSES, Platform, metrics_address

# A BSN from the range the Dutch government keeps for tests: no person has it.
DEMO_BSN = "999990019"


def main(argv=None):
    parser = argparse.ArgumentParser(prog="mantelzorg", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="start every service and the gateway with demo data")
    commands.add_parser("declare-queues", help="declare every exchange and consumer queue")
    importer = commands.add_parser("import-reference",
                                   help="import municipalities.csv and pc4.csv from a folder")
    importer.add_argument("folder", type=Path)
    commands.add_parser("announce-pc4-areas",
                        help="publish the registry's PC4 areas again, for the travel-cost fund")
    points = commands.add_parser("import-support-points",
                                 help="import support points from a CSV file")
    points.add_argument("file", type=Path)
    dead = commands.add_parser("dead-letters", help="list or replay parked events")
    dead.add_argument("action", choices=("list", "replay"))
    dead.add_argument("--event-id", action="append", help="replay only these (repeatable)")
    commands.add_parser("reencrypt-personal-data",
                        help="after a new data key: re-encrypt stored personal data with it")
    token = commands.add_parser("token", help="print a development token (HS256)")
    token.add_argument("role")
    token.add_argument("--sub", default="dev-user")
    token.add_argument("--municipality")
    token.add_argument("--support-point")
    token.add_argument("--bsn", help=f"a caregiver's BSN (default: the demo BSN {DEMO_BSN})")
    args = parser.parse_args(argv)
    quiet_libraries()
    os.environ.setdefault("AMQP_URI", settings.DEFAULT_AMQP_URI)
    try:
        return COMMANDS[args.command](args)
    except BrokerMissing as problem:
        print(problem, file=sys.stderr)
        return 1


def run(_args):
    amqp = os.environ["AMQP_URI"]
    ensure_broker(amqp)
    if not os.environ.get("MANTELZORG_JWT_SECRET"):
        os.environ["MANTELZORG_JWT_SECRET"] = secrets.token_urlsafe(32)
        print(f"MANTELZORG_JWT_SECRET was unset; this run signs with: "
              f"{os.environ['MANTELZORG_JWT_SECRET']}")
    declare_topology()
    platform = Platform()
    platform.start()
    try:
        platform.wait_until_healthy()
        with platform.rpc(timeout=60) as rpc:
            seed(rpc)
        print_welcome(platform)
        platform.wait_while_running()
    except KeyboardInterrupt:
        print("\nstopping …")
    finally:
        platform.stop()
    return 0


def seed(rpc):
    """Reference data from MANTELZORG_REFERENCE_DIR (else the built-in sample), then the demo
    support points; every step is idempotent, so a restart adds nothing twice."""
    folder = os.environ.get("MANTELZORG_REFERENCE_DIR")
    source = Path(folder) if folder else reference.DEMO_DIR
    for name, report in reference.import_reference(rpc, source).items():
        print(f"{reference.summary(name, report)} (from {source})")
    report = reference.import_support_points(rpc, reference.DEMO_DIR / "support_points.csv",
                                             {"sub": "demo-seed", "role": "admin"})
    print(reference.summary("demo support points", report))


def print_welcome(platform):
    secret = os.environ["MANTELZORG_JWT_SECRET"]
    url = platform.gateway_url()
    print(f"\nThe platform runs. GraphQL: {url}/graphql (GraphiQL in a browser)")
    for process in PROCESSES:
        print(f"  metrics of {process.name:<13} http://{metrics_address(process, os.environ)}/metrics")
    print("Development tokens (8 hours), for the Authorization header 'Bearer <token>':")
    for role, claims in (("admin", {}), ("municipality", {"municipality": "GM0363"}),
                         ("partner", {}), ("caregiver", {"bsn": DEMO_BSN}), ("fund", {}),
                         ("campaign", {})):
        print(f"  {role:<13} {issue_development_token(secret, role, f'demo-{role}', **claims)}")
    print("Stop with Ctrl-C.")


def declare_queues(_args):
    ensure_broker(os.environ["AMQP_URI"])
    for queue in declare_topology():
        print(queue)
    return 0


def import_reference(args):
    ensure_broker(os.environ["AMQP_URI"])
    with Platform().rpc(timeout=120) as rpc:
        reports = reference.import_reference(rpc, args.folder)
    print(json.dumps(reports, indent=2))
    return 0 if not any(r["rejected"] for r in reports.values()) else 2


def announce_pc4_areas(_args):
    """The fund keeps its own copy of the PC4 centroids from the registry's events; a fund
    deployed after the areas were imported gets them with this."""
    ensure_broker(os.environ["AMQP_URI"])
    with Platform().rpc(timeout=120) as rpc:
        print(f"announced {rpc.registry.announce_pc4_areas()} PC4 areas")
    return 0


def import_support_points(args):
    ensure_broker(os.environ["AMQP_URI"])
    with Platform().rpc(timeout=120) as rpc:
        report = reference.import_support_points(rpc, args.file)
    print(json.dumps(report, indent=2))
    return 0 if not report["rejected"] else 2


def dead_letters(args):
    if args.action == "list":
        for entry in list_dead_letters():
            print(json.dumps(entry))
        return 0
    replayed = replay_dead_letters(event_ids=args.event_id)
    print(f"replayed {len(replayed)} event(s)")
    for entry in replayed:
        print(json.dumps(entry))
    return 0


# The services that keep personal data encrypted with the data key.
ENCRYPTING_SERVICES = ("declaration", "travel_costs")


def reencrypt_personal_data(_args):
    """Batches, per service, until nothing is left on an earlier configured data key. Exit 2
    when some data is under a key that is no longer configured: put it back behind the new
    one and run again."""
    ensure_broker(os.environ["AMQP_URI"])
    failed = False
    with Platform().rpc(timeout=300) as rpc:
        for service in ENCRYPTING_SERVICES:
            total = 0
            while True:
                report = getattr(rpc, service).reencrypt_personal_data()
                total += report["reencrypted"]
                print(f"{service}: re-encrypted {total} with key {report['key_id']}; "
                      f"{report['remaining']} left on earlier keys")
                if not report["reencrypted"] or not report["remaining"]:
                    break
            if report["unreadable"]:
                print(f"{service}: {report['unreadable']} encrypted with keys that are not "
                      f"configured: {', '.join(report['unknown_keys'])}", file=sys.stderr)
            failed |= bool(report["remaining"] or report["unreadable"])
    return 2 if failed else 0


def token(args):
    secret = os.environ.get("MANTELZORG_JWT_SECRET")
    if not secret:
        print("set MANTELZORG_JWT_SECRET to the secret the gateway runs with", file=sys.stderr)
        return 1
    bsn = (args.bsn or DEMO_BSN) if args.role == "caregiver" else None
    print(issue_development_token(secret, args.role, args.sub, municipality=args.municipality,
                                  support_point=args.support_point, bsn=bsn))
    return 0


COMMANDS = {"run": run, "declare-queues": declare_queues, "import-reference": import_reference,
            "import-support-points": import_support_points, "announce-pc4-areas": announce_pc4_areas,
            "dead-letters": dead_letters, "reencrypt-personal-data": reencrypt_personal_data,
            "token": token}

if __name__ == "__main__":
    sys.exit(main())
