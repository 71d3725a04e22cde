"""Redaction of personal data in logs, and the event envelope."""
import io
import json
import logging

import pytest
import structlog
from pydantic import ValidationError

from common.events import CATALOGUE, SUBSCRIPTIONS, Envelope, new_envelope
from common.logging import configure_logging, redact_text
from common.topology import retry_delays_ms


@pytest.mark.parametrize("text", [
    "bsn 111222333 requested", "IBAN NL91ABNA0417164300 paid", "iban NL91 ABNA 0417 1643 00",
])
def test_bsn_and_iban_shapes_are_redacted(text):
    redacted = redact_text(text)
    assert "111222333" not in redacted and "0417164300" not in redacted and "0417 1643" not in redacted
    assert "[redacted]" in redacted


def test_ordinary_values_stay():
    text = "declaration MZV-2026-000123 at 2026-11-23T13:16:11.123456Z, GM0363, 1012 AB"
    assert redact_text(text) == text


def test_log_lines_are_json_and_carry_no_personal_data():
    stream = io.StringIO()
    configure_logging("unit", stream=stream)
    try:
        structlog.contextvars.bind_contextvars(correlation_id="c-1")
        structlog.get_logger("mantelzorg").info("caregiver.seen", bsn="111222333",
                                                note="paid to NL91ABNA0417164300")
        logging.getLogger("nameko.test").warning("stdlib says 111222333")
    finally:
        structlog.contextvars.clear_contextvars()
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines[0]["event"] == "caregiver.seen" and lines[0]["correlation_id"] == "c-1"
    assert lines[0]["service"] == "unit"
    assert "111222333" not in stream.getvalue() and "0417164300" not in stream.getvalue()


def test_an_envelope_is_validated_against_the_catalogue():
    envelope = new_envelope("municipality.imported", {
        "code": "GM0363", "name": "Amsterdam", "province": "Noord-Holland", "population": 1},
        "c-1", "registry")
    again = Envelope.model_validate(envelope.model_dump(mode="json"))
    assert again.parsed_payload().code == "GM0363"
    assert again.version == CATALOGUE["municipality.imported"].version
    with pytest.raises(ValidationError):
        new_envelope("municipality.imported", {"code": "GM0363"}, "c-1", "registry")
    with pytest.raises(ValueError, match="may not publish"):
        new_envelope("municipality.imported", {"code": "GM0363", "name": "A", "province": "B"},
                     "c-1", "campaign")
    with pytest.raises(ValidationError):
        Envelope.model_validate({"type": "municipality.imported", "payload": {}})


def test_every_subscription_names_a_catalogued_event_and_a_unique_queue():
    queues = [s.queue for s in SUBSCRIPTIONS]
    assert len(queues) == len(set(queues))
    for entry in SUBSCRIPTIONS:
        assert entry.event in CATALOGUE
        assert entry.source != entry.consumer


def test_a_consumer_reads_what_it_knows_of_a_newer_event_while_publishers_stay_strict():
    body = new_envelope("municipality.imported", {
        "code": "GM0363", "name": "Amsterdam", "province": "Noord-Holland", "population": 1},
        "c-1", "registry").model_dump(mode="json")
    body["payload"]["mayor"] = "a field a newer publisher added"
    body["trace"] = "an envelope field a newer publisher added"
    received = Envelope.received(body)
    assert received.parsed_payload().code == "GM0363"
    with pytest.raises(ValidationError):
        new_envelope("municipality.imported", body["payload"], "c-1", "registry")


def test_a_version_the_catalogue_does_not_know_is_refused_by_consumers():
    body = new_envelope("municipality.imported", {
        "code": "GM0363", "name": "Amsterdam", "province": "Noord-Holland"},
        "c-1", "registry").model_dump(mode="json")
    body["version"] = CATALOGUE["municipality.imported"].version + 1
    with pytest.raises(ValueError, match="unknown version"):
        Envelope.received(body).parsed_payload()


def test_by_default_a_failing_event_is_retried_for_longer_than_a_ten_minute_outage(monkeypatch):
    for name in ("EVENT_MAX_ATTEMPTS", "EVENT_RETRY_DELAY_MS", "EVENT_RETRY_MAX_DELAY_MS"):
        monkeypatch.delenv(name, raising=False)
    delays = retry_delays_ms()
    assert sum(delays) > 10 * 60 * 1000
    assert delays == sorted(delays) and delays[0] == 1000 and max(delays) == 120_000
    assert retry_delays_ms({"EVENT_MAX_ATTEMPTS": 4, "EVENT_RETRY_DELAY_MS": 100,
                            "EVENT_RETRY_MAX_DELAY_MS": 300}) == [100, 200, 300]
