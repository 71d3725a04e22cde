"""After every other test of the run: no BSN, IBAN, name or personal e-mail address that the
tests used is in a log line of any process of any platform the tests started (the shared
one, the fault tests' and the broker permission tests' own, the gateways of their own such
as the identity provider's), in the files of their stores, an event body, a metric label,
an error answer or an e-mail the platform wrote (beyond its own recipient's address), in
any spacing or case. The tests record what they use (tests/support.py: random_bsn,
random_iban, personal_email, personal_name and the IBAN and names of the claims), so the
scan looks for exactly those values."""
import json
import re
from email import message_from_bytes, policy
from pathlib import Path

import pytest
import requests
from kombu import Connection

from ops.platform import PROCESSES, metrics_address
from tests.support import (ANSWERS, EVENT_CAPTURE_QUEUE, SENT, STARTED, personal_data_in,
                           sent_to_the_caregiver)

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


# Texts scanned together: each check runs over every BSN, IBAN, name and address the tests
# used, so fewer, longer texts make the scan seconds instead of minutes.
BATCH = 500


def _joined(texts):
    """Texts as one, apart: a NUL survives the scan's folding of separators and white space,
    so no match is made of the end of one text and the start of the next."""
    return "\n\x00".join(texts)


# The store's files are mostly space it set aside: runs of zero bytes, which hold nothing and
# took six in seven of the bytes scanned. A run stays one zero, which no value spans either.
_ZERO_RUN = re.compile(rb"\x00{2,}")


def _without_empty_space(data):
    return _ZERO_RUN.sub(b"\x00", data)


def _files(folder):
    return sorted(path for path in Path(folder).rglob("*") if path.is_file())


def _sources(platform, amqp_uri):
    """(where, text) of everything the scan reads."""
    assert platform.environ["MANTELZORG_DATA_DIR"] in map(str, STARTED.data)
    for logs in STARTED.logs:
        for path in [logs] if logs.is_file() else _files(logs):
            # a whole file at once: scanning it line by line took minutes
            yield f"log {path.parent.name}/{path.name}", _joined(
                path.read_text(errors="replace").splitlines())
    for data in STARTED.data:
        for path in _files(data):   # the embedded store's files hold documents as they are
            if not {"keys", "mail"} & set(path.relative_to(data).parts):   # mail: below
                yield f"store {path.relative_to(data.parent)}", _without_empty_space(
                    path.read_bytes()).decode("utf-8", errors="replace")
    events = [body if isinstance(body, str) else json.dumps(body)
              for _routing_key, body in _published_events(amqp_uri)]
    for start in range(0, len(events), BATCH):
        yield f"event {start + 1}-{start + BATCH}", _joined(events[start:start + BATCH])
    for process in PROCESSES:
        address = metrics_address(process, platform.environ)
        yield f"metrics of {process.name}", requests.get(f"http://{address}/metrics",
                                                         timeout=10).text
    answers = [body for _request, body in ANSWERS.answers]
    for start in range(0, len(answers), BATCH):
        yield (f"error answer {start + 1}-{start + BATCH} of the run",
               _joined(answers[start:start + BATCH]))
    for name, text in _mail_files(platform):
        yield f"mail file {name}", text


@pytest.mark.after_everything
def test_no_personal_data_the_tests_used_leaks_anywhere(request, platform, amqp_uri):
    ran = {item.module.__name__.rsplit(".", 1)[-1] for item in request.session.items}
    if not SENT.bsns and not (ran & SENDERS):
        pytest.skip("no test of this run sent personal data")
    assert SENT.bsns and SENT.emails and SENT.names and SENT.ibans, \
        "the tests that send personal data recorded none"
    assert ANSWERS.answers, "no error answer was recorded"
    findings, scanned, to_the_caregiver = [], {}, sent_to_the_caregiver()
    for where, text in _sources(platform, amqp_uri):
        kind_of_source = where.split(" ", 1)[0]
        scanned[kind_of_source] = scanned.get(kind_of_source, 0) + 1
        sent = to_the_caregiver if kind_of_source == "mail" else SENT
        findings.extend(f"{where}: {kind}" for kind in personal_data_in(text, sent))
    expected = {"log", "store", "event", "metrics", "error"} | (
        {"mail"} if ran & MAILERS else set())
    assert set(scanned) >= expected, f"nothing read from some: {scanned}"
    if findings:
        pytest.fail(f"{len(findings)} places hold personal data the tests used:\n"
                    + "\n".join(findings[:50]), pytrace=False)
