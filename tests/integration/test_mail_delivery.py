"""The caregiver's e-mails over a real SMTP server (aiosmtpd on loopback, STARTTLS with a test
certificate the service is told to trust), on a platform of its own (its own virtual host):
a decision gives exactly one message and one e-mail; a mail server that is down while the
e-mail is tried again and again, the wait grown to its longest, delays it, and it then arrives
once; an address the server refuses for good is parked
and counted. Then, the service restarted on ``smtps://`` (TLS from the first byte): an e-mail
arrives once; a server whose certificate the service does not trust gets none, and the e-mail
waits until the trusted server is back. The retry delays are short here (0.2 s doubling up to
0.8 s)."""
import re
import time
import uuid

import pytest

from common.topology import declare_topology
from ops.broker import create_vhost, delete_vhost
from ops.platform import metrics_address, process_named
from ops.reference import import_municipalities
from tests.conftest import free_port, running_platform
from tests.integration.test_declaration import decide, filer, request, request_input
from tests.smtp_server import SmtpServer
from tests.support import SENT, GraphQLClient, eventually, log_lines, personal_data_in, scrape

SITE = "https://mantelzorg.test"
SENDER = "Mantelzorg <berichten@mantelzorg.test>"
# Tries while the server is down: the wait doubles from 0.2 s and is at its longest (0.8 s) from
# the third failed try on, so the last six come at the longest wait, as in a long outage. The
# longest wait is shorter than a relay tick (1 s): each try comes at the next tick.
TRIES_WHILE_DOWN = 8
FIRST_RETRY_DELAY_MS = 200
LONGEST_RETRY_DELAY_MS = 800
# Ample for those tries, too short for them had the wait kept doubling (over 25 s).
TRIES_WHILE_DOWN_SECONDS = 20
# Longer than the longest retry delay and a relay tick (1 s): a second copy would be sent by now.
NO_SECOND_COPY_SECONDS = LONGEST_RETRY_DELAY_MS / 1000 + 1.5
MY_MESSAGES = "{ myMessages { id sentAt subject body about } }"
RETRIED = 'mantelzorg_notifications_mails_total{outcome="retried"}'


@pytest.fixture(scope="module")
def smtp(tmp_path_factory):
    server = SmtpServer(free_port(), tmp_path_factory.mktemp("smtp") / "received")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def mail_platform(amqp_uri, tmp_path_factory, reference_data, smtp):
    base = amqp_uri.rsplit("/", 1)[0] + "/"
    vhost = f"mantelzorg-mail-{uuid.uuid4().hex[:8]}"
    uri = create_vhost(base, vhost)
    try:
        declare_topology({"AMQP_URI": uri})
        with running_platform(uri, tmp_path_factory,
                              MANTELZORG_SMTP_URL=f"smtp://127.0.0.1:{smtp.port}",
                              MANTELZORG_SMTP_CA_FILE=str(smtp.cert),
                              MANTELZORG_MAIL_FROM=SENDER, MANTELZORG_PUBLIC_URL=SITE,
                              MAIL_RETRY_DELAY_MS=str(FIRST_RETRY_DELAY_MS),
                              MAIL_RETRY_MAX_DELAY_MS=str(LONGEST_RETRY_DELAY_MS)) as running:
            with running.rpc(timeout=60) as rpc:
                import_municipalities(rpc, reference_data / "municipalities.csv")
            yield running
    finally:
        delete_vhost(base, vhost)


@pytest.fixture(scope="module")
def gql(mail_platform):
    return GraphQLClient(f"{mail_platform.gateway_url()}/graphql")


def metric(platform, sample):
    address = metrics_address(process_named("notifications"), platform.environ)
    return scrape(f"http://{address}/metrics", sample)


def messages(gql, data):
    answer = gql(MY_MESSAGES, token=filer(data))
    assert "errors" not in answer, answer
    return answer["data"]["myMessages"]


def issued_with_mail(gql, **changes):
    data = request_input(**changes)
    declaration = request(gql, data)
    decide(gql, declaration)
    return data, declaration


def test_a_decision_gives_exactly_one_message_and_one_email(gql, smtp, mail_platform):
    data, declaration = issued_with_mail(gql)
    address = data["caregiver"]["email"]
    received = smtp.received_for(address, timeout=30)
    assert len(received) == 1
    mail = received[0]
    assert mail["From"] == SENDER and mail["Subject"] == "Uw mantelzorgverklaring is afgegeven"
    body = mail.get_content()
    assert declaration["reference"] in body and f"{SITE}/verklaringen" in body
    assert body.startswith("Beste Anna de Vries,")
    # no BSN, no care recipient's name, no verification code
    assert data["caregiver"]["bsn"] not in body
    assert data["careRecipient"]["name"] not in body
    assert declaration.get("verificationCode") is None or declaration["verificationCode"] not in body

    box = messages(gql, data)
    assert len(box) == 1
    assert box[0]["subject"] == mail["Subject"] and box[0]["about"] == declaration["reference"]
    assert box[0]["body"].replace("\r\n", "\n") == body.replace("\r\n", "\n")
    time.sleep(3)   # a few more relay ticks: nothing more
    assert len(smtp.received_for(address)) == 1
    assert len(messages(gql, data)) == 1


def issued_with_mail_that_waits(gql, platform, tries, timeout):
    """A decision whose e-mail the mail server does not take: the message is there at once,
    the e-mail is tried again and again (``tries`` times within ``timeout`` seconds), never
    handed over, and waits."""
    retried_before = metric(platform, RETRIED)
    data, declaration = issued_with_mail(gql)
    assert eventually(lambda: len(messages(gql, data)) == 1, timeout=30)
    assert eventually(lambda: metric(platform, RETRIED) - retried_before >= tries,
                      timeout=timeout, interval=0.5)
    with platform.rpc(timeout=10) as rpc:
        assert rpc.notifications.health()["mails_pending"] >= 1
    return data, declaration


def arrives_once(server, platform, data, declaration):
    """The e-mail that waited reaches ``server``, once, and none waits any more."""
    address = data["caregiver"]["email"]
    received = server.received_for(address, timeout=30)
    assert len(received) == 1 and declaration["reference"] in received[0].get_content()
    time.sleep(NO_SECOND_COPY_SECONDS)
    assert len(server.received_for(address)) == 1
    with platform.rpc(timeout=10) as rpc:
        assert eventually(lambda: rpc.notifications.health()["mails_pending"] == 0, timeout=10)


def test_a_mail_server_that_is_down_delays_the_email_which_then_arrives_once(
        gql, smtp, mail_platform):
    smtp.stop()
    try:
        data, declaration = issued_with_mail_that_waits(gql, mail_platform, TRIES_WHILE_DOWN,
                                                        TRIES_WHILE_DOWN_SECONDS)
    finally:
        smtp.start()
    arrives_once(smtp, mail_platform, data, declaration)


def test_an_address_refused_for_good_is_parked_and_counted(gql, smtp, mail_platform):
    parked_before = metric(mail_platform, 'mantelzorg_notifications_mails_total{outcome="parked"}')
    refused = f"onbekend.{uuid.uuid4().hex[:10]}@example.nl"
    SENT.emails.add(refused)
    data = request_input()
    data["caregiver"]["email"] = refused
    declaration = request(gql, data)
    decide(gql, declaration, "REJECT", reason="niet genoeg uren")
    assert eventually(lambda: metric(
        mail_platform, 'mantelzorg_notifications_mails_total{outcome="parked"}') == parked_before + 1,
        timeout=30)
    with mail_platform.rpc(timeout=10) as rpc:
        queue = rpc.notifications.mail_queue()
    assert len(queue["parked"]) == 1 and "550" in queue["parked"][0]["error"]
    assert refused not in str(queue)
    assert eventually(lambda: metric(
        mail_platform, 'mantelzorg_notifications_mails_waiting{status="parked"}') == 1, timeout=15)
    # the message itself is in the caregiver's box all the same, without the typed reason
    box = messages(gql, data)
    assert [m["subject"] for m in box] == ["Uw aanvraag voor een mantelzorgverklaring is afgewezen"]
    assert "niet genoeg uren" not in box[0]["body"]
    time.sleep(3)
    assert smtp.received_for(refused) == []


@pytest.fixture(scope="module")
def smtps(tmp_path_factory):
    """Two servers speaking TLS from the first byte, taking turns on one port: ``trusted``,
    whose certificate the service is told to trust, and ``untrusted``, with a certificate of
    its own that nothing vouches for."""
    port = free_port()
    servers = {name: SmtpServer(port, tmp_path_factory.mktemp(f"smtps-{name}") / "received",
                                tls="implicit") for name in ("trusted", "untrusted")}
    yield servers
    for server in servers.values():
        server.stop()


@pytest.fixture(scope="module")
def over_smtps(mail_platform, smtps):
    """The notifications service restarted to send over ``smtps://``, trusting only the
    trusted server's certificate; afterwards back on STARTTLS."""
    notifications = process_named("notifications")

    def restart(**settings):
        mail_platform.process_environ["notifications"] = settings
        mail_platform.stop_process(notifications)
        mail_platform.start_process(notifications)
        mail_platform.wait_until_healthy(names=["notifications"])

    trusted = smtps["trusted"]
    restart(MANTELZORG_SMTP_URL=f"smtps://127.0.0.1:{trusted.port}",
            MANTELZORG_SMTP_CA_FILE=str(trusted.cert))
    yield mail_platform
    restart()


def test_an_email_over_smtps_arrives_once(gql, smtps, over_smtps):
    trusted = smtps["trusted"]
    trusted.start()
    try:
        data, declaration = issued_with_mail(gql)
        address = data["caregiver"]["email"]
        received = trusted.received_for(address, timeout=30)
        assert len(received) == 1 and declaration["reference"] in received[0].get_content()
        time.sleep(3)   # a few more relay ticks: nothing more
        assert len(trusted.received_for(address)) == 1
    finally:
        trusted.stop()


def test_an_smtps_server_the_service_does_not_trust_gets_no_email_which_waits(
        gql, smtps, over_smtps):
    trusted, untrusted = smtps["trusted"], smtps["untrusted"]
    untrusted.start()
    try:
        # the handshake fails on the certificate
        data, declaration = issued_with_mail_that_waits(gql, over_smtps, 3, 30)
        assert untrusted.received() == []
    finally:
        untrusted.stop()
    # the trusted server on the same address: the e-mail that waited arrives, once
    trusted.start()
    try:
        arrives_once(trusted, over_smtps, data, declaration)
    finally:
        trusted.stop()
    assert untrusted.received() == []


def test_the_service_logs_no_address_or_bsn(mail_platform):
    lines = [line for name in ("notifications", "declaration")
             for line in mail_platform.log_file(name).read_text(errors="replace").splitlines()]
    assert lines
    findings = [kind for line in lines for kind in personal_data_in(line)]
    assert findings == []
    sent = [line for line in log_lines(mail_platform, "notifications")
            if line.get("event") == "notifications.mail_sent"]
    assert sent and all(re.fullmatch(r"[0-9a-f]{32}\.mail", line["mail_id"]) for line in sent)
