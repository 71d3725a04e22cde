"""The caregiver's messages on the shared platform, which has no mail server: every decision
on a declaration and every step of a travel claim the caregiver waits for gives one message
(myMessages, newest first) and, with an address, one e-mail written as an .eml file under
$MANTELZORG_DATA_DIR/mail/; an event delivered twice gives nothing more; a declaration
about to expire gives its notice once."""
import json
import uuid
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from kombu import Connection, Queue
from nameko.standalone.events import get_event_exchange

from common.events import subscription
from common.publishing import publish
from ops.platform import metrics_address, process_named
from tests.integration.test_declaration import (REVOKE, SETTINGS, decide, filer, request,
                                                request_input, staff)
from tests.support import (Caregiver, eventually, personal_data_in, scrape, sent_to_the_caregiver,
                           token, trip)

MY_MESSAGES = "{ myMessages { id sentAt subject body about } }"
ISSUED_EVENTS = "test.notifications.declaration-issued"
EXPIRING_SEAT = "GM1690"   # De Wolden: its validity is set to one month here, nowhere else
REVIEW = """mutation($id: ID!, $approve: Boolean!, $reason: String) {
  reviewTravelClaim(id: $id, approve: $approve, reason: $reason) { status } }"""
PAY = "mutation { createPayoutBatch { id claimCount } }"


def messages(gql, bearer):
    answer = gql(MY_MESSAGES, token=bearer)
    assert "errors" not in answer, answer
    return answer["data"]["myMessages"]


def messages_about(gql, bearer, about, count, timeout=30):
    """The caregiver's messages about ``about`` once there are ``count`` of them."""
    def enough():
        found = [m for m in messages(gql, bearer) if m["about"] == about]
        return found if len(found) >= count else None

    found = eventually(enough, timeout=timeout)
    assert found, f"fewer than {count} messages about {about}"
    return found


def mail_files(platform, address):
    """The e-mails to ``address`` the notifications service wrote as files."""
    folder = Path(platform.environ["MANTELZORG_DATA_DIR"]) / "mail"
    found = [message_from_bytes(path.read_bytes(), policy=policy.default)
             for path in sorted(folder.glob("*.eml"))] if folder.exists() else []
    return [mail for mail in found if mail["To"] == address]


def metric(platform, sample):
    address = metrics_address(process_named("notifications"), platform.environ)
    return scrape(f"http://{address}/metrics", sample)


@pytest.fixture(scope="module")
def known(municipalities):
    return municipalities


def test_each_decision_on_a_declaration_gives_one_message_and_one_mail_file(gql, platform, known):
    data = request_input()
    address, owner = data["caregiver"]["email"], filer(data)
    declaration = request(gql, data)
    decide(gql, declaration)
    issued, = messages_about(gql, owner, declaration["reference"], 1)
    assert issued["subject"] == "Uw mantelzorgverklaring is afgegeven"
    assert issued["body"].startswith("Beste Anna de Vries,\n\n")
    assert "/verklaringen" in issued["body"]
    mails = eventually(lambda: mail_files(platform, address), timeout=15)
    assert len(mails) == 1 and mails[0]["Subject"] == issued["subject"]
    assert mails[0].get_content().replace("\r\n", "\n") == issued["body"]

    revoked = gql(REVOKE, {"id": declaration["id"], "reason": "verhuisd naar Jan in Zwolle"},
                  token=staff())
    assert "errors" not in revoked, revoked
    both = messages_about(gql, owner, declaration["reference"], 2)
    assert [m["subject"] for m in both] == ["Uw mantelzorgverklaring is ingetrokken",
                                           "Uw mantelzorgverklaring is afgegeven"]   # newest first
    assert "Jan" not in both[0]["body"] and "Zwolle" not in both[0]["body"]
    assert eventually(lambda: len(mail_files(platform, address)) == 2, timeout=15)
    for mail in mail_files(platform, address):
        assert personal_data_in(mail.get_content(), sent_to_the_caregiver()) == []
        assert data["careRecipient"]["name"] not in mail.as_string()


def test_without_an_address_there_is_a_message_and_no_mail(gql, platform, known):
    data = request_input()
    data["caregiver"]["email"] = None
    declaration = request(gql, data)
    decide(gql, declaration, "REJECT", reason="minder dan acht uur per week")
    rejected, = messages_about(gql, filer(data), declaration["reference"], 1)
    assert rejected["subject"] == "Uw aanvraag voor een mantelzorgverklaring is afgewezen"
    assert "acht uur" not in rejected["body"]   # the reason is read on the page
    folder = Path(platform.environ["MANTELZORG_DATA_DIR"]) / "mail"
    assert not [path for path in folder.glob("*.eml")
                if declaration["reference"] in path.read_text(errors="replace")]


def test_messages_are_only_the_callers_own(gql, known):
    data = request_input()
    declaration = request(gql, data)
    decide(gql, declaration)
    messages_about(gql, filer(data), declaration["reference"], 1)
    other = token("caregiver", f"cg-{uuid.uuid4().hex[:8]}")
    assert messages(gql, other) == []


def test_an_event_delivered_twice_gives_no_second_message(gql, platform, amqp_uri, known):
    with Connection(amqp_uri) as connection:
        channel = connection.channel()
        capture = Queue(ISSUED_EVENTS, get_event_exchange("declaration", {}),
                        routing_key="declaration.issued")(channel)
        capture.declare()
        data = request_input()
        declaration = request(gql, data)
        decide(gql, declaration)
        messages_about(gql, filer(data), declaration["reference"], 1)
        assert eventually(lambda: len(mail_files(platform, data["caregiver"]["email"])) == 1,
                          timeout=15)
        envelope = None
        while envelope is None:
            received = capture.get(no_ack=True)
            assert received is not None, "the issued event was not captured"
            body = received.decode() if not isinstance(received.payload, dict) else received.payload
            body = json.loads(body) if isinstance(body, (str, bytes)) else body
            if body["payload"]["reference"] == declaration["reference"]:
                envelope = body
        capture.delete()
        entry = subscription("declaration.issued", "notifications", "on_declaration_changed")
        sample = ('mantelzorg_events_handled_total{outcome="duplicate",service="notifications",'
                  'type="declaration.issued"}')
        before = metric(platform, sample)
        for _ in range(2):
            publish(connection, envelope, "", entry.queue,
                    {"nameko.correlation_id": envelope["correlation_id"]})
    assert eventually(lambda: metric(platform, sample) == before + 2, timeout=15)
    eventually(lambda: False, timeout=3)   # a few relay ticks: no second e-mail either
    assert len(messages(gql, filer(data))) == 1
    assert len(mail_files(platform, data["caregiver"]["email"])) == 1


def test_a_declaration_about_to_expire_gives_its_notice_once(gql, known):
    choices = gql(SETTINGS, {"code": EXPIRING_SEAT, "input": {"validityMonths": 1}},
                  token=staff(EXPIRING_SEAT))
    assert "errors" not in choices, choices
    data = request_input(municipality=EXPIRING_SEAT)
    declaration = request(gql, data)
    decide(gql, declaration, who=staff(EXPIRING_SEAT))
    both = messages_about(gql, filer(data), declaration["reference"], 2)
    assert [m["subject"] for m in both] == ["Uw mantelzorgverklaring verloopt binnenkort",
                                           "Uw mantelzorgverklaring is afgegeven"]
    assert "/verklaringen/aanvragen" in both[0]["body"]
    eventually(lambda: False, timeout=3)   # a few more checks: no second notice
    assert len(messages(gql, filer(data))) == 2


def test_every_step_of_a_claim_the_caregiver_waits_for_gives_its_message(gql, pc4_areas):
    caregiver = Caregiver(gql)
    held = caregiver.submitted(trip(distanceKm="200"))   # far beyond the straight line
    assert held["status"] == "ON_HOLD"
    on_hold, = messages_about(gql, caregiver.token, held["id"], 1)
    assert on_hold["subject"] == "Uw declaratie van reiskosten wacht"
    assert "afstand" in on_hold["body"] and "/reiskosten" in on_hold["body"]
    assert "€" in on_hold["body"] and caregiver.reference in on_hold["body"]

    approved = gql(REVIEW, {"id": held["id"], "approve": True, "reason": "route gecontroleerd"},
                   token=token("fund"))
    assert approved["data"]["reviewTravelClaim"]["status"] == "APPROVED", approved
    assert messages_about(gql, caregiver.token, held["id"], 2)[0]["subject"] == \
        "Uw declaratie van reiskosten is goedgekeurd"
    # four eyes: one fund member proposes the payout, another releases it
    proposed = gql(PAY, token=token("fund", sub="fund-proposer"))
    assert "errors" not in proposed, proposed
    paid = gql("mutation($id: ID!) { releasePayoutBatch(id: $id) { status } }",
               {"id": proposed["data"]["createPayoutBatch"]["id"]},
               token=token("fund", sub="fund-releaser"))
    assert paid["data"]["releasePayoutBatch"]["status"] == "RELEASED", paid
    assert messages_about(gql, caregiver.token, held["id"], 3)[0]["subject"] == \
        "Uw reiskosten zijn overgemaakt"

    refused = caregiver.submitted(trip(date=trip()["date"], fromPostcode="1013 AA"))
    rejected = gql(REVIEW, {"id": refused["id"], "approve": False, "reason": "dubbel"},
                   token=token("fund"))
    assert rejected["data"]["reviewTravelClaim"]["status"] == "REJECTED", rejected
    last, = messages_about(gql, caregiver.token, refused["id"], 1)
    assert last["subject"] == "Uw declaratie van reiskosten is afgewezen"
    assert "dubbel" not in last["body"]
