"""After every other test of the run, in a run of its own (`make test`): no BSN, IBAN, name or
personal e-mail address that the tests used is in a log line of any process of any platform
the tests started (the shared ones, the fault tests' and the broker permission tests' own, the
gateways of their own such as the identity provider's), in the files of their stores, an event
body, a metric label, an error answer or an e-mail the platform wrote (beyond its own
recipient's address), in any spacing or case. The tests record what they use (tests/support.py:
random_bsn, random_iban, personal_email, personal_name and the IBAN and names of the claims),
and each test process leaves that and what it started on disk (tests/run_record.py), so the
scan looks for exactly those values."""
import re
from email import message_from_bytes, policy
from pathlib import Path

import pytest

from tests.run_record import RECORD, SCAN_MARK, read_record
from tests.support import personal_data_in

# Test modules that send personal data: when one of them ran, the scan must have values to
# look for, or it would pass for nothing.
SENDERS = {"test_declaration", "test_authorisation", "test_gateway_http"}
# Test modules that have the platform write e-mails (decisions for caregivers who gave an
# address): when one ran, the scan must have read some.
MAILERS = {"test_declaration", "test_authorisation", "test_notifications"}


def _mail_files(data):
    """Each e-mail the notifications service of a shared platform wrote as a file (no mail
    server there), without its To header: the recipient's own address is what it is sent
    to."""
    folder = Path(data) / "mail"
    for path in sorted(folder.glob("*.eml")) if folder.exists() else []:
        mail = message_from_bytes(path.read_bytes(), policy=policy.default)
        del mail["To"]
        yield path.name, mail.as_string()


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


def _sources(record):
    """(where, text) of everything the scan reads."""
    for platform in record.platforms:
        assert Path(platform["data"]) in record.data, "a shared platform's store is not named"
    for logs in record.logs:
        for path in [logs] if logs.is_file() else _files(logs):
            # a whole file at once: scanning it line by line took minutes
            yield f"log {path.parent.name}/{path.name}", _joined(
                path.read_text(errors="replace").splitlines())
    for data in record.data:
        for path in _files(data):   # the embedded store's files hold documents as they are
            if not {"keys", "mail"} & set(path.relative_to(data).parts):   # mail: below
                yield f"store {path.relative_to(data.parent)}", _without_empty_space(
                    path.read_bytes()).decode("utf-8", errors="replace")
    for number, platform in enumerate(record.platforms, 1):
        events = platform["events"]
        for start in range(0, len(events), BATCH):
            yield (f"event {start + 1}-{start + BATCH} of platform {number}",
                   _joined(events[start:start + BATCH]))
        for name, text in platform["metrics"].items():
            yield f"metrics of {name} of platform {number}", text
        for name, text in _mail_files(platform["data"]):
            yield f"mail file {name}", text
    for start in range(0, len(record.answers), BATCH):
        yield (f"error answer {start + 1}-{start + BATCH} of the run",
               _joined(record.answers[start:start + BATCH]))


@pytest.mark.after_everything
def test_no_personal_data_the_tests_used_leaks_anywhere():
    record = read_record()
    if not record.modules:
        pytest.fail(f"no record of a run in {RECORD}: run the other tests first, then "
                    f"`pytest -m {SCAN_MARK}` (as `make test` does)", pytrace=False)
    if not record.sent.bsns and not (record.modules & SENDERS):
        pytest.skip("no test of the run before sent personal data")
    sent = record.sent
    assert sent.bsns and sent.emails and sent.names and sent.ibans, \
        "the tests that send personal data recorded none"
    assert record.answers, "no error answer was recorded"
    assert record.platforms, "no shared platform left its metrics and events"
    findings, scanned, to_the_caregiver = [], {}, record.to_the_caregiver()
    for where, text in _sources(record):
        kind_of_source = where.split(" ", 1)[0]
        scanned[kind_of_source] = scanned.get(kind_of_source, 0) + 1
        findings.extend(f"{where}: {kind}" for kind in personal_data_in(
            text, to_the_caregiver if kind_of_source == "mail" else sent))
    expected = {"log", "store", "event", "metrics", "error"} | (
        {"mail"} if record.modules & MAILERS else set())
    assert set(scanned) >= expected, f"nothing read from some: {scanned}"
    if findings:
        pytest.fail(f"{len(findings)} places hold personal data the tests used:\n"
                    + "\n".join(findings[:50]), pytrace=False)
