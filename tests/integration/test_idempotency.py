"""The Idempotency-Key header through the gateway, on the real broker and the embedded
store: a mutation sent again runs once and answers the same. (The 24 hours and a request
still running: tests/unit/test_idempotency.py.)"""
import uuid

import pytest

from common.crypto import keyed_hash
from common.storage import REQUEST_KEY
from gateway.auth import Principal
from gateway.context import call_identity
from gateway.idempotency import request_identity
from tests.integration.test_declaration import AMSTERDAM, DECIDE, GET, request
from tests.integration.test_registry import REGISTER, point_input
from tests.support import error_codes, token

# A municipality of these tests alone, so that its page holds every point they register.
SEAT = "GM1680"
SEARCH = f"""query($first: Int) {{ supportPoints(municipalityCode: "{SEAT}", first: $first) {{
    items {{ name }} }} }}"""


@pytest.fixture(scope="module")
def admin():
    return token("admin", sub=f"idempotency-{uuid.uuid4().hex[:8]}")


def register(gql, data, key, as_token):
    return gql.post(REGISTER, {"input": data}, token=as_token,
                    headers={"Idempotency-Key": key})


def stored_with_name(gql, name):
    items = gql(SEARCH, {"first": 100})["data"]["supportPoints"]["items"]
    return sum(point["name"] == name for point in items)


def test_the_same_key_twice_registers_one_point_with_the_same_answer(gql, municipalities,
                                                                      admin):
    data, key = point_input(SEAT), uuid.uuid4().hex
    first = register(gql, data, key, admin)
    second = register(gql, data, key, admin)
    assert first.status_code == second.status_code == 200
    assert "errors" not in first.json(), first.json()
    assert second.json() == first.json()
    assert stored_with_name(gql, data["name"]) == 1


def test_another_body_with_the_same_key_is_a_conflict(gql, municipalities, admin):
    key = uuid.uuid4().hex
    first, other = point_input(SEAT), point_input(SEAT)
    assert "errors" not in register(gql, first, key, admin).json()
    refused = register(gql, other, key, admin)
    assert refused.status_code == 409
    assert error_codes(refused.json()) == ["CONFLICT"]
    assert refused.json()["errors"][0]["extensions"]["field"] == "Idempotency-Key"
    assert stored_with_name(gql, other["name"]) == 0


def test_two_callers_with_the_same_key_are_independent(gql, municipalities, admin):
    key = uuid.uuid4().hex
    other_admin = token("admin", sub=f"idempotency-{uuid.uuid4().hex[:8]}")
    data = point_input(SEAT)
    mine = register(gql, data, key, admin).json()
    theirs = register(gql, data, key, other_admin).json()
    assert "errors" not in theirs, theirs
    assert mine["data"]["registerSupportPoint"]["id"] != \
        theirs["data"]["registerSupportPoint"]["id"]
    assert stored_with_name(gql, data["name"]) == 2


def test_queries_and_requests_without_a_key_ignore_it(gql, municipalities, admin):
    data = point_input(SEAT)
    for _ in range(2):
        assert "errors" not in gql(REGISTER, {"input": data}, token=admin)
    assert stored_with_name(gql, data["name"]) == 2
    key = uuid.uuid4().hex
    for first in (1, 2):   # the same key on two different queries: both answered
        answer = gql.post(SEARCH, {"first": first}, token=admin,
                          headers={"Idempotency-Key": key}).json()
        assert "errors" not in answer, answer


def test_a_bad_key_is_refused_before_anything_runs(gql, municipalities, admin):
    data = point_input(SEAT)
    refused = register(gql, data, "x" * 256, admin)
    assert refused.status_code == 400
    assert refused.json()["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT",
                                                         "field": "Idempotency-Key"}
    assert stored_with_name(gql, data["name"]) == 0


def lost_reply(platform, caller, key, body, service, method, *args):
    """The call ``service.method(*args)`` made as the gateway makes it for ``body`` sent by
    ``caller`` with ``key`` (with the identity it derives from them), done, and its reply
    dropped, as when the service is killed after its commit or the broker restarts. Made
    twice: the second call already answers what the first did."""
    lookup_hash = keyed_hash({"DATA_DIR": platform.environ["MANTELZORG_DATA_DIR"]},
                             environ=platform.environ)
    identity = call_identity(request_identity(lookup_hash, caller, key, body), service, method)
    with platform.rpc(timeout=30, context_data={REQUEST_KEY: identity}) as proxy:
        lost = getattr(getattr(proxy, service), method)(*args)
        assert getattr(getattr(proxy, service), method)(*args) == lost
    return lost


def test_a_retry_after_a_lost_reply_gets_the_point_that_was_registered(gql, platform,
                                                                        municipalities):
    """The client's retry through the gateway with the same key gets the point the lost
    call registered, and no second one."""
    caller = Principal(sub=f"idempotency-{uuid.uuid4().hex[:8]}", role="admin")
    data, key = point_input(SEAT), uuid.uuid4().hex
    body = {"query": REGISTER, "variables": {"input": data}}   # what the client sends
    lost = lost_reply(platform, caller, key, body, "registry", "register_support_point",
                      data, caller.as_actor())
    assert stored_with_name(gql, data["name"]) == 1

    retried = register(gql, data, key, token("admin", sub=caller.sub))
    assert retried.status_code == 200
    assert "errors" not in retried.json(), retried.json()
    assert retried.json()["data"]["registerSupportPoint"]["id"] == lost["id"]
    assert retried.json()["data"]["registerSupportPoint"]["version"] == lost["version"]
    assert stored_with_name(gql, data["name"]) == 1


def test_a_retry_after_a_lost_reply_gets_the_decision_that_was_made(gql, platform, known):
    """A step of a lifecycle, which asked again would be a CONFLICT (the declaration is no
    longer REQUESTED): the retry gets the decision the lost call made, and the step is in
    the declaration's history once."""
    requested = request(gql)
    caller = Principal(sub=f"idempotency-{uuid.uuid4().hex[:8]}", role="municipality",
                       municipality=AMSTERDAM)
    key = uuid.uuid4().hex
    variables = {"id": requested["id"], "decision": "ISSUE"}
    lost = lost_reply(platform, caller, key, {"query": DECIDE, "variables": variables},
                      "declaration", "decide_declaration", requested["id"], "ISSUE", None,
                      caller.as_actor())
    assert lost["status"] == "ISSUED"

    who = token("municipality", caller.sub, municipality=AMSTERDAM)
    retried = gql(DECIDE, variables, token=who, headers={"Idempotency-Key": key})
    assert "errors" not in retried, retried
    decided = retried["data"]["decideDeclaration"]
    assert (decided["reference"], decided["status"], decided["validUntil"]) == (
        lost["reference"], "ISSUED", lost["valid_until"])
    stored = gql(GET, {"reference": requested["reference"]}, token=who)["data"]["declaration"]
    assert [entry["toStatus"] for entry in stored["history"]] == ["REQUESTED", "ISSUED"]
    # Without the key it is the step it is: made already.
    assert error_codes(gql(DECIDE, variables, token=who)) == ["CONFLICT"]
