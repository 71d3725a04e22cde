"""Redaction of personal data in logs, and the event envelope."""
import io
import json
import logging

import pytest
import structlog
from pydantic import ValidationError

from common.events import CATALOGUE, SUBSCRIPTIONS, Envelope, new_envelope
from common.logging import configure_logging, redact_text


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
