"""The notifications service's rules without a broker: the texts, the ids that make a message
once, the retry delays, the mail transport's settings, and the page's rendering of a body."""
import pytest

from common.config import SettingsError
from gateway.web.texts import linked, paragraphs
from services.notifications import domain, mail

SITE = "https://mantelzorg.example"
RECIPIENT = {"caregiver_key": "k", "name": "Anna de Vries", "email": "anna@example.nl"}


@pytest.mark.parametrize("status", ["ISSUED", "REJECTED", "REVOKED", "EXPIRING"])
def test_every_declaration_message_greets_says_what_happened_and_links_the_page(status):
    subject, body = domain.declaration_message(status, "MZV-2026-000123", "2027-01-31",
                                               RECIPIENT, SITE)
    assert subject and body.startswith("Beste Anna de Vries,\n\n")
    assert "MZV-2026-000123" in body and f"{SITE}/verklaringen" in body
    assert body.rstrip().endswith("Mantelzorg — hulp voor wie zorgt")
    if status in ("ISSUED", "EXPIRING"):
        assert "31 januari 2027" in body


def test_an_expired_declaration_gives_no_message_the_notice_came_before():
    assert domain.declaration_message("EXPIRED", "MZV-2026-000123", "2027-01-31", RECIPIENT,
                                      SITE) is None


@pytest.mark.parametrize("hold, words", [("DISTANCE", "afstand"),
                                         ("DECLARATION_REVOKED", "ingetrokken"),
                                         ("DECLARATION_EXPIRED", "/verklaringen/aanvragen"),
                                         (None, "contact")])
def test_a_claim_on_hold_says_what_the_fund_needs(hold, words):
    subject, body = domain.claim_message(
        "ON_HOLD", {"hold": hold, "amount_euros": "1234.5", "declaration_reference": "MZV-1"},
        RECIPIENT, SITE)
    assert subject == "Uw declaratie van reiskosten wacht"
    assert words in body and "€ 1.234,50" in body and f"{SITE}/reiskosten" in body


def test_a_caregiver_without_a_name_on_file_is_greeted_all_the_same():
    _subject, body = domain.claim_message("PAID", {"amount_euros": "10"}, {"name": None}, SITE)
    assert body.startswith("Beste mantelzorger,")


def test_a_message_id_names_its_occasion():
    assert domain.message_id("declaration", "d1", "ISSUED") == \
        domain.message_id("declaration", "d1", "ISSUED")
    assert domain.message_id("declaration", "d1", "ISSUED") != \
        domain.message_id("declaration", "d1", "REVOKED")
    assert len(domain.message_id("travel_claim", "c", "ON_HOLD", "e")) == 32


def test_the_wait_doubles_up_to_the_longest_and_never_gives_up():
    waits = [domain.retry_delay_seconds(n, 500, 4000) for n in range(1, 8)]
    assert waits == [0.5, 1, 2, 4, 4, 4, 4]


def test_a_mail_server_address_must_be_smtp_or_smtps():
    assert mail.SmtpTransport("smtp://u:p%40ss@mail.example").port == 587
    secure = mail.SmtpTransport("smtps://mail.example")
    assert secure.port == 465 and secure.tls_from_start
    for wrong in ("http://mail.example", "mail.example:25", "smtp://"):
        with pytest.raises(SettingsError):
            mail.SmtpTransport(wrong)


def test_production_does_not_start_without_a_mail_server(tmp_path):
    with pytest.raises(SettingsError, match="MANTELZORG_SMTP_URL"):
        mail.transport({}, environ={"MANTELZORG_ENV": "production"})
    development = mail.transport({"DATA_DIR": str(tmp_path)}, environ={})
    assert isinstance(development, mail.FileTransport) and (tmp_path / "mail").is_dir()


def test_development_writes_each_mail_once_as_a_file(tmp_path):
    files = mail.FileTransport(tmp_path / "mail")
    from datetime import datetime, timezone
    message = mail.compose("abc.mail", "Mantelzorg <m@x.nl>", "a@example.nl", "Onderwerp",
                           "Beste Anna,\n\ntekst", datetime.now(timezone.utc))
    files.send(message)
    files.send(message)
    assert [p.name for p in (tmp_path / "mail").iterdir()] == ["abc.mail.eml"]
    assert message["Message-ID"] == "<abc.mail@x.nl>"


def test_the_page_shows_a_body_as_paragraphs_with_links_and_nothing_unescaped():
    body = "Beste <b>Anna</b>,\n\nLees het op https://m.example/verklaringen.\n\nGroet,\nM"
    parts = paragraphs(body)
    assert len(parts) == 3
    assert str(linked(parts[0])) == "Beste &lt;b&gt;Anna&lt;/b&gt;,"
    assert str(linked(parts[1])) == ('Lees het op <a class="utrecht-link" '
                                      'href="https://m.example/verklaringen">'
                                      'https://m.example/verklaringen</a>.')
    assert str(linked(parts[2])) == "Groet,<br>\nM"
