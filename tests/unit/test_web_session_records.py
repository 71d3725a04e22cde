"""The server's side of the web sessions: a signed-out or idle session is refused, whatever
cookie comes back; a staff member's session goes idle after 15 minutes, a caregiver's after
30. The gateway's own store, in memory."""
import secrets

import pytest

from common.crypto import DataCipher
from gateway.storage import GatewayStore
from gateway.web.session import SessionCodec, SessionRecords
from gateway.web.texts import organisation_name
from tests.support import store_in_memory


@pytest.fixture(scope="module")
def store():
    with store_in_memory(GatewayStore, "gateway_sessions_probe") as store:
        yield store


def test_a_session_ends_on_the_server_when_signed_out_or_idle(store):
    now = [1_000_000.0]
    records = SessionRecords(store, clock=lambda: now[0])
    codec = SessionCodec(DataCipher([("k1", secrets.token_bytes(32))]), clock=lambda: now[0])

    staff = codec.load("")
    staff.sign_in_staff("municipality", "staff-1", municipality="GM0344", name="Sam")
    records.open(staff)
    cookie = codec.dump(staff)
    now[0] += 14 * 60
    seen = codec.load(cookie)
    assert records.still_open(seen)                        # seen 14 minutes later
    cookie = codec.dump(seen)
    now[0] += 14 * 60
    assert records.still_open(codec.load(cookie))          # each page counts as seen
    now[0] += 15 * 60 + 1
    assert not records.still_open(staff)                   # 15 minutes without a page
    assert codec.load(codec.dump(staff)) != {}             # though a fresh cookie says signed in

    caregiver = codec.load("")
    caregiver.sign_in("111222333", "caregiver-x")
    records.open(caregiver)
    now[0] += 20 * 60
    assert records.still_open(caregiver)                   # a caregiver has 30 minutes
    copy = codec.dump(caregiver)
    records.end(caregiver)
    assert not records.still_open(codec.load(copy))        # signed out: the copy is refused

    assert not records.still_open(codec.load(""))          # no session, nothing open
    assert caregiver.session_id not in str(list(store["web_sessions"].find()))


@pytest.mark.parametrize("identity, shown", [
    ({"role": "municipality", "municipality": "GM0200", "organisation_name": "Apeldoorn"},
     "gemeente Apeldoorn"),
    ({"role": "support_point", "support_point": "p1", "organisation_name": "Steunpunt Noord"},
     "Steunpunt Noord"),
    ({"role": "fund", "organisation_name": "Reiskostenfonds"}, "reiskostenfonds"),
    # signed in through a provider while the registry could not tell: the code stands in
    ({"role": "municipality", "municipality": "GM0200", "organisation_name": ""},
     "gemeente GM0200")])
def test_the_sealed_session_keeps_the_organisations_name_from_the_sign_in(identity, shown):
    codec = SessionCodec(DataCipher([("k1", secrets.token_bytes(32))]))
    staff = codec.load("")
    staff.sign_in_staff(sub="staff-1", name="Anna Jansen", **identity)
    assert organisation_name(codec.load(codec.dump(staff))) == shown
