"""``mantelzorg`` — the operator's command line. ``make run`` calls ``mantelzorg run``."""
import argparse
import json
import os
import secrets
import signal
import sys
from datetime import date
from pathlib import Path

import requests
import yaml

from common import config as settings
from common import crypto
from common.errors import BadUserInput
from common.events import event_type
from common.logging import quiet_libraries
from common.dead_letters import list_dead_letters, replay_dead_letters
from common.topology import declare_topology, missing_queues
from gateway.auth import issue_development_token
from ops import reference, store, tls
from ops.broker import BrokerMissing, create_user, ensure_broker
from ops.platform import PROCESSES, Platform, metrics_address

# A BSN from the range the Dutch government keeps for tests: no person has it.
DEMO_BSN = "999990019"
# The first print of the approach's 100,000 information bags; its id makes the seed add it
# once however often the platform restarts.
FIRST_PRINT_RUN = 50_000
FIRST_PRINT_RUN_ID = "first-print-run"


def main(argv=None):
    parser = argparse.ArgumentParser(prog="mantelzorg", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    runner = commands.add_parser("run", help="start every service and the gateway with demo data")
    runner.add_argument("--sample", action="store_true",
                        help="import the ten-municipality sample instead of the national data")
    declare = commands.add_parser("declare-queues", help="declare every exchange and consumer queue")
    declare.add_argument("--check", action="store_true",
                         help="declare nothing; exit 1 while a queue is missing (an init container)")
    importer = commands.add_parser("import-reference",
                                   help="import municipalities.csv and pc4.csv from a folder")
    importer.add_argument("folder", type=Path)
    points = commands.add_parser("import-support-points",
                                 help="import support points from a CSV file")
    points.add_argument("file", type=Path)
    dead = commands.add_parser("dead-letters", help="list or replay parked events")
    dead.add_argument("action", choices=("list", "replay"))
    dead.add_argument("--event-id", action="append", help="replay only these (repeatable)")
    again = commands.add_parser("republish", help="send the current state as events to one "
                                "consumer's queue (a new consumer catching up)")
    again.add_argument("event", help="the event type, e.g. declaration.issued")
    again.add_argument("--to", required=True, metavar="QUEUE",
                       help="the consumer's queue, evt-<source>-<event>--<consumer>.<handler>")
    commands.add_parser("reencrypt-personal-data",
                        help="after a new data key: re-encrypt stored personal data with it")
    expiry = commands.add_parser("expire-declarations",
                                 help="expire issued declarations whose validity has ended")
    expiry.add_argument("--today", type=date.fromisoformat, default=None,
                        help="the day to expire for, YYYY-MM-DD (default: today)")
    commands.add_parser("parked-mails", help="list the e-mails the mail server refused for "
                        "good, with its answer (never the address)")
    users = commands.add_parser("broker-users", help="make each process's RabbitMQ user with the "
                                "permissions of deploy/k8s/base/rabbitmq-users.yaml (compose)")
    users.add_argument("file", type=Path, help="the rabbitmq-users.yaml of deploy/k8s/base")
    users.add_argument("--vhost", default="/", help="the virtual host (default: /)")
    tls = commands.add_parser("new-tls-certificates", help="write a certificate authority and "
                              "certificates of the broker and the database into a folder "
                              "(compose)")
    tls.add_argument("folder", type=Path)
    keys = commands.add_parser("new-keys", help="print new keys for personal data and declaration "
                               "tokens as lines of an .env file")
    keys.add_argument("--data-key-id", help="id of the new data key (default: k<today>)")
    keys.add_argument("--process", choices=sorted(name for name, kinds in
                                                  crypto.PROCESS_KEYS.items() if kinds),
                      help="only this process's keys, as its Secret names them (Kubernetes); "
                           "without: every process's own, as .env names them (compose)")
    probe = commands.add_parser("probe", help="exit 0 when a process of this host answers on "
                                "its metrics address (a container's health check)")
    probe.add_argument("process", choices=[process.name for process in PROCESSES])
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
        if args.command in DEVELOPMENT_ONLY and settings.is_production():
            raise settings.SettingsError(
                f"MANTELZORG_ENV={settings.PRODUCTION}: 'mantelzorg {args.command}' is for "
                "development only (demo data, development tokens)")
        return COMMANDS[args.command](args)
    except (BrokerMissing, settings.SettingsError) as problem:
        print(problem, file=sys.stderr)
        return 1


def run(args):
    ensure_broker(settings.amqp_uri())
    if not settings.setting(None, "MANTELZORG_JWT_SECRET"):
        os.environ["MANTELZORG_JWT_SECRET"] = secret = secrets.token_urlsafe(32)
        print(f"MANTELZORG_JWT_SECRET was unset; this run signs with: {secret}")
    declare_topology()
    platform = Platform()
    stop_on_signals(signal.SIGTERM, signal.SIGHUP)
    try:
        platform.start()
        platform.wait_until_healthy()
        with platform.rpc(timeout=60) as rpc:
            seed(rpc, sample=args.sample)
        print_welcome(platform)
        platform.wait_while_running()
    except (KeyboardInterrupt, StopRequested) as reason:
        print(f"\n{reason or 'interrupted'}: stopping …", flush=True)
    finally:
        # Nothing interrupts the stop itself: it ends every process, by SIGKILL if need be.
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)
        platform.stop()
    print("stopped", flush=True)
    return 0


class StopRequested(BaseException):
    """A supervisor, a container runtime or ``kill`` asked the launcher to stop."""


def stop_on_signals(*signums):
    """These signals stop the platform as Ctrl-C does."""
    def request_stop(signum, _frame):
        raise StopRequested(signal.Signals(signum).name)
    for signum in signums:
        signal.signal(signum, request_stop)


def seed(rpc, sample=False):
    """Reference data from MANTELZORG_REFERENCE_DIR (else the national CBS data, or the small
    sample with ``--sample``), the demo
    support points, then the first print run of information bags; every step is idempotent,
    so a restart adds nothing twice."""
    folder = settings.setting(None, "MANTELZORG_REFERENCE_DIR")
    source = Path(folder) if folder else (reference.DEMO_DIR if sample else reference.NATIONAL_DIR)
    for name, report in reference.import_reference(rpc, source).items():
        print(f"{reference.summary(name, report)} (from {source})")
    report = reference.import_support_points(rpc, reference.DEMO_DIR / "support_points.csv",
                                             {"sub": "demo-seed", "role": "admin"})
    print(reference.summary("demo support points", report))
    stock = rpc.campaign.add_print_run(FIRST_PRINT_RUN, {"sub": "demo-seed", "role": "admin"},
                                       run_id=FIRST_PRINT_RUN_ID)
    print(f"information bags: {stock['printed']:,} printed, {stock['available']:,} available")


def print_welcome(platform):
    secret = settings.setting(None, "MANTELZORG_JWT_SECRET")
    url = platform.gateway_url()
    print(f"\nThe platform runs. GraphQL: {url}/graphql (GraphiQL in a browser)")
    for name, address in platform.addresses.items():
        print(f"  metrics of {name:<15} http://{address}/metrics")
    if platform.store_port is not None:
        print(f"  the store (a process of its own): {store.uri(platform.store_port)}")
    print("Development tokens (8 hours), for the Authorization header 'Bearer <token>':")
    for role, claims in (("admin", {}), ("municipality", {"municipality": "GM0363"}),
                         ("partner", {}), ("caregiver", {"bsn": DEMO_BSN}), ("fund", {}),
                         ("campaign", {})):
        print(f"  {role:<13} {issue_development_token(secret, role, f'demo-{role}', **claims)}")
    print("Stop with Ctrl-C.")


def declare_queues(args):
    ensure_broker(settings.amqp_uri())
    if args.check:
        missing = missing_queues()
        for queue in missing:
            print(f"missing: {queue}", file=sys.stderr)
        return 1 if missing else 0
    for queue in declare_topology():
        print(queue)
    return 0


def import_reference(args):
    ensure_broker(settings.amqp_uri())
    with Platform().rpc(timeout=120) as rpc:
        reports = reference.import_reference(rpc, args.folder)
    print(json.dumps(reports, indent=2))
    return 0 if not any(r["rejected"] for r in reports.values()) else 2


def import_support_points(args):
    ensure_broker(settings.amqp_uri())
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


def republish(args):
    """Batch after batch from the event's source service, until its state is sent."""
    ensure_broker(settings.amqp_uri())
    try:
        source = event_type(args.event).source
    except ValueError as problem:
        print(problem, file=sys.stderr)
        return 2
    total, after = 0, None
    with Platform().rpc(timeout=120) as rpc:
        while True:
            try:
                batch = getattr(rpc, source).republish(args.event, args.to, after)
            except BadUserInput as problem:
                print(problem, file=sys.stderr)
                return 2
            total += batch["sent"]
            after = batch["next"]
            if after is None:
                break
    print(f"sent {total} {args.event} event(s) to {args.to}")
    return 0


# The services that keep personal data encrypted with the data key.
ENCRYPTING_SERVICES = ("declaration", "travel_costs", "notifications")


def reencrypt_personal_data(_args):
    """Batches, per service, until nothing is left on an earlier configured data key. Exit 2
    when some data is under a key that is no longer configured: put it back behind the new
    one and run again."""
    ensure_broker(settings.amqp_uri())
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


def parked_mails(_args):
    """One JSON line per parked e-mail, then how many wait to be sent."""
    ensure_broker(settings.amqp_uri())
    with Platform().rpc(timeout=60) as rpc:
        queue = rpc.notifications.mail_queue()
    for entry in queue["parked"]:
        print(json.dumps(entry))
    print(f"{len(queue['parked'])} parked, {queue['pending']} waiting to be sent")
    return 0


def expire_declarations(args):
    """What the declaration service's timer does every minute, now, or for another day."""
    ensure_broker(settings.amqp_uri())
    today = args.today.isoformat() if args.today else None
    with Platform().rpc(timeout=300) as rpc:
        expired = rpc.declaration.expire_due(today)
    print(f"expired {expired} declaration(s)")
    return 0


def _pem_line(name, pem):
    """A PEM as one line of an .env file: its line breaks written as \\n, in double quotes."""
    escaped = pem.strip().replace("\n", "\\n")
    return f'{name}="{escaped}\\n"'


def broker_users(args):
    """Each process's own broker user, as the Kubernetes manifests make them with the
    Messaging Topology Operator: for every Permission of ``args.file`` whose user has a
    password in ``BROKER_PASSWORD_<USER>`` (``travel-costs``: BROKER_PASSWORD_TRAVEL_COSTS).
    Connects with AMQP_URI, the administrator's; no process but this step gets that one."""
    amqp = settings.amqp_uri()
    ensure_broker(amqp)
    made = 0
    for document in yaml.safe_load_all(args.file.read_text()):
        if not document or document.get("kind") != "Permission":
            continue
        user = document["spec"]["userReference"]["name"]
        password = os.environ.get(broker_password_variable(user))
        if password:
            create_user(amqp, args.vhost, user, password, document["spec"]["permissions"])
            print(f"broker user {user}")
            made += 1
    return 0 if made else 1


def new_tls_certificates(args):
    """For docker compose: ca.crt, rabbitmq.crt/.key and mongo.pem (docs/operations.md)."""
    print(tls.new_certificates(args.folder, ["rabbitmq", "mongo"]))
    return 0


def broker_password_variable(user):
    return "BROKER_PASSWORD_" + user.upper().replace("-", "_")


def new_keys(args):
    """Lines for .env (docker-compose) or a process's Secret, each process's keys its own
    (common.crypto.PROCESS_KEYS); rotation takes only the keys it rotates
    (docs/operations.md). The PEM's line breaks are written as \\n inside double quotes."""
    key_id = args.data_key_id or f"k{date.today():%Y%m%d}"
    for process in [args.process] if args.process else crypto.PROCESS_KEYS:
        prefix = "" if args.process else env_prefix(process)
        for line in _new_key_lines(crypto.PROCESS_KEYS[process], key_id):
            print(line if line.startswith("#") else prefix + line)
    if not args.process:   # the gateway's and the operator's signed calls
        for issuer in crypto.CALL_SIGNERS:
            call_pem = crypto.new_signing_key()
            print(_pem_line(crypto.call_key_setting(issuer), call_pem))
            print(f"{crypto.call_public_key_setting(issuer)}="
                  f"{crypto.call_public_key_text(call_pem)}")
    return 0


def env_prefix(process):
    """How .env names a process's own key: DECLARATION_MANTELZORG_DATA_KEY ..."""
    return process.upper() + "_"


def _new_key_lines(kinds, key_id):
    made = {crypto.DATA_KEY: lambda: crypto.new_data_key(key_id),
            crypto.SESSION_KEY: lambda: crypto.new_data_key(key_id),
            crypto.LOOKUP_KEY: crypto.new_lookup_key}
    for kind in kinds:
        if kind != crypto.SIGNING_KEY:
            yield f"{kind}={made[kind]()}"
            continue
        pem = crypto.new_signing_key()
        signing_id, public = crypto.signing_public_key(pem)
        yield _pem_line(kind, pem)
        yield f"{kind}_ID={signing_id}"
        yield (f"# after this signing key is replaced, keep it verifiable with "
               f"MANTELZORG_SIGNING_PUBLIC_KEYS={signing_id}:{public}")


def probe(args):
    process = next(p for p in PROCESSES if p.name == args.process)
    host, _, port = metrics_address(process, os.environ).rpartition(":")
    if host in ("0.0.0.0", ""):   # listening everywhere: ask on loopback
        host = "127.0.0.1"
    try:
        return 0 if requests.get(f"http://{host}:{port}/metrics", timeout=3).ok else 1
    except requests.RequestException:
        return 1


def token(args):
    secret = settings.setting(None, "MANTELZORG_JWT_SECRET")
    if not secret:
        print("set MANTELZORG_JWT_SECRET to the secret the gateway runs with", file=sys.stderr)
        return 1
    bsn = (args.bsn or DEMO_BSN) if args.role == "caregiver" else None
    print(issue_development_token(secret, args.role, args.sub, municipality=args.municipality,
                                  support_point=args.support_point, bsn=bsn))
    return 0


DEVELOPMENT_ONLY = ("run", "token")
COMMANDS = {"run": run, "declare-queues": declare_queues, "import-reference": import_reference,
            "import-support-points": import_support_points,
            "dead-letters": dead_letters, "reencrypt-personal-data": reencrypt_personal_data,
            "expire-declarations": expire_declarations, "republish": republish,
            "parked-mails": parked_mails,
            "new-keys": new_keys, "probe": probe, "token": token, "broker-users": broker_users,
            "new-tls-certificates": new_tls_certificates}

if __name__ == "__main__":
    sys.exit(main())
