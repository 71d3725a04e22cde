"""After every other test of the run: no BSN, IBAN or personal e-mail address that the
tests used is in a log line of any process, an event body, a metric label, an error answer
or an e-mail the platform wrote (beyond its own recipient's address), in any spacing. The
tests record what they make (tests/support.py: random_bsn, random_iban, personal_email), so
the scan looks for exactly those values."""
import json
from email import message_from_bytes, policy
from pathlib import Path

import pytest
import requests
from kombu import Connection

from ops.platform import PROCESSES, metrics_address
from tests.support import ANSWERS, EVENT_CAPTURE_QUEUE, SENT, personal_data_in

# Test modules that send personal data: when one of them ran, the scan must have values to
# look for, or it would pass for nothing.
SENDERS = {"test_declaration", "test_authorisation", "test_gateway_http"}
# Test modules that have the platform write e-mails (decisions for caregivers who gave an
# address): when one ran, the scan must have read some.
MAILERS = {"test_declaration", "test_authorisation", "test_notifications"}


def _mail_files(platform):
    """Each e-mail the notifications service wrote as a file (no mail server in the tests'
    platform), without its To header: the recipient's own address is what it is sent to."""
    folder = Path(platform.environ["MANTELZORG_DATA_DIR"]) / "mail"
    for path in sorted(folder.glob("*.eml")) if folder.exists() else []:
        mail = message_from_bytes(path.read_bytes(), policy=policy.default)
        del mail["To"]
        yield path.name, mail.as_string()


def _published_events(amqp_uri):
    with Connection(amqp_uri) as connection:
        queue = connection.SimpleQueue(EVENT_CAPTURE_QUEUE)
        try:
            while True:
                try:
                    message = queue.get(block=False)
                except queue.Empty:
                    return
                yield message.delivery_info.get("routing_key"), message.body
                message.ack()
        finally:
            queue.close()


def _sources(platform, amqp_uri):
    """(where, text) of everything the scan reads."""
    for process in PROCESSES:
        for number, line in enumerate(platform.log_file(process.name).read_text(
                errors="replace").splitlines(), start=1):
            yield f"log of {process.name}, line {number}", line
    for number, (routing_key, body) in enumerate(_published_events(amqp_uri), start=1):
        text = body if isinstance(body, str) else json.dumps(body)
        yield f"event {number} ({routing_key})", text
    for process in PROCESSES:
        address = metrics_address(process, platform.environ)
        yield f"metrics of {process.name}", requests.get(f"http://{address}/metrics",
                                                         timeout=10).text
    for number, (request, body) in enumerate(ANSWERS.answers, start=1):
        yield f"error answer {number} of the run, to {request}", body
    for name, text in _mail_files(platform):
        yield f"mail file {name}", text


@pytest.mark.after_everything
def test_no_personal_data_the_tests_used_leaks_anywhere(request, platform, amqp_uri):
    ran = {item.module.__name__.rsplit(".", 1)[-1] for item in request.session.items}
    if not SENT.bsns and not (ran & SENDERS):
        pytest.skip("no test of this run sent personal data")
    assert SENT.bsns and SENT.emails, "the tests that send personal data recorded none"
    assert ANSWERS.answers, "no error answer was recorded"
    findings, scanned = [], {}
    for where, text in _sources(platform, amqp_uri):
        kind_of_source = where.split(" ", 1)[0]
        scanned[kind_of_source] = scanned.get(kind_of_source, 0) + 1
        findings.extend(f"{where}: {kind}" for kind in personal_data_in(text))
    expected = {"log", "event", "metrics", "error"} | ({"mail"} if ran & MAILERS else set())
    assert set(scanned) >= expected, f"nothing read from some: {scanned}"
    if findings:
        pytest.fail(f"{len(findings)} places hold personal data the tests used:\n"
                    + "\n".join(findings[:50]), pytrace=False)
