"""Every mutation of the contract (and of the gateway's additions) is safe to retry, on the
real broker and the embedded store: sent through the gateway with an ``Idempotency-Key``, then
sent again with the same key and body after the gateway lost its record of the key (it was
restarted with its database gone, as a gateway replaced on a fresh disk), the retry gets
exactly the first answer, and the work was done once: one event of its type for what it
changed, and nothing read back differs after the retry.

The gateway forgetting the key is the hardest case of a lost reply: the gateway cannot answer
from its own record, so the retry reaches the services again, with the same request identity
(``gateway/idempotency.py``), and each service answers what it recorded the first time
(``common.storage.once_per_request``). A mutation added to the schema without a row here fails
``test_the_table_covers_every_mutation``.

And when the first run did not happen (sent while its service was down: UNAVAILABLE, the call
expired on the broker), the retry with the same key runs it, once: one event of its type.

The runs take place once for the module (``first_runs``): every row's preconditions and first
run, then one restart of the gateway without its database, then a test per row for its retry;
then (``unrun_first``) every row's preconditions again, each service stopped in turn while its
rows are sent (together: each waits for the gateway to give up), and a test per row for the
retry. The retries of each part are sent in one go (``retried``, ``retried_unrun``), then the
events are given time to arrive, once for all rows, before the tests look at them."""
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path

import eventlet
import pytest
from kombu import Connection, Queue
from nameko.standalone.events import get_event_exchange

from common.config import SERVICE_NAMES
from gateway.schema import schema
from ops.platform import process_named
from tests.integration.test_authorisation import OTHER, OWN, World
from tests.support import drain, error_codes, eventually, token

POINT = "id name version active updatedAt municipalityCode areas"
DECLARATION = """id reference status verificationCode token createdAt decisionDueOn
  history { fromStatus toStatus action actorRole reason }"""
CLAIM = "id status declarationReference amountEuros ibanMasked reason submittedAt"
ORDER = "id status municipalityCode supportPointId quantityRequested quantityAllocated createdAt"
CAMPAIGN = ("id name scope launched reachedSupportPoints municipalityCodes "
            "optedOutMunicipalityCodes")
BATCH = "id claimCount totalEuros createdAt status releasedAt sepaXmlUrl"
ROUND = (f"id availableBefore allocated createdAt allocations {{ allocatedNow explanation "
         f"order {{ {ORDER} }} }}")

# Where each mutation runs, for the first runs that do not happen (their service is down).
SERVICE_OF = {
    **dict.fromkeys(("registerSupportPoint", "updateSupportPoint", "deactivateSupportPoint"),
                    "registry"),
    **dict.fromkeys(("requestDeclaration", "decideDeclaration", "revokeDeclaration",
                     "renewVerificationCode", "setDeclarationSettings"), "declaration"),
    **dict.fromkeys(("submitTravelClaim", "reviewTravelClaim", "createPayoutBatch",
                     "releasePayoutBatch"), "travel_costs"),
}
# The services stopped in turn, each while the rows it runs are sent.
STOPPED_IN_TURN = ("registry", "declaration", "travel_costs", "campaign")
# The gateway gives up soon on a service that is down (a payout's call included).
SHORT_TIMEOUTS = {"GATEWAY_RPC_TIMEOUT_SECONDS": "1", "GATEWAY_PAYOUT_TIMEOUT_SECONDS": "1"}

ADMIN = token("admin", sub="retry-admin")
STAFF = token("municipality", sub="retry-staff", municipality=OWN)
FUND = token("fund", sub="retry-fund")
CAMPAIGN_STAFF = token("campaign", sub="retry-campaign")


class Row:
    """One mutation: its document, how to make its variables (the preconditions made just
    before), who sends it, the event its work announces (and of which thing in the answer:
    ``ids``), and a read whose answer the retry must not change."""

    def __init__(self, query, make=lambda w: {}, bearer=ADMIN, event=None,
                 ids=lambda answer: [answer["id"]], read=None):
        self.query, self.make, self.bearer = query, make, bearer
        self.event, self.ids, self.read = event, ids, read


def on_id(mutation, fields, arguments=""):
    """The document of a mutation of one thing by its id."""
    return f"mutation($id: ID!) {{ {mutation}(id: $id{arguments}) {{ {fields} }} }}"


def point_read(answer):
    return ("query($id: ID!) { supportPoint(id: $id) { " + POINT + " } }", {"id": answer["id"]})


def declaration_read(answer):
    return ("query($r: String!) { declaration(reference: $r) { " + DECLARATION + " } }",
            {"r": answer["reference"]})


def orders_read(answer):
    # the stock is for campaign staff and admins alone
    return ("query { bagOrders { " + ORDER + " } bagStock { printed allocated shipped available } }",
            {}, ADMIN)


def campaigns_read(answer):
    return ("query { campaigns { " + CAMPAIGN + " } }", {})


def claims_read(answer):
    return ("query { travelClaims(first: 100) { " + CLAIM + " } }", {})


def batches_read(answer):
    return ("query { payoutBatches { id status claimCount } travelClaims(first: 100) { id status } }",
            {})


def allocated_orders(answer):
    return [entry["order"]["id"] for entry in answer["allocations"]]


MAX_ORDER = 100_000    # the most bags one order may ask for


class RetryWorld(World):
    """The authorisation table's world, with what the retry rows need besides."""

    def ordered_bags(self):
        """An order that waits (an order the stock covers is allocated at once), then the
        bags it waits for: an allocation round has it to share them over."""
        while True:   # an order may ask at most 100,000: larger stock is ordered away first
            available = self.call("query { bagStock { available } }", None, ADMIN)[
                "bagStock"]["available"]
            quantity = min(available + 7, MAX_ORDER)
            self.call("mutation($m: String!, $q: Int!) { orderInformationBags("
                      "municipalityCode: $m, quantity: $q) { id } }",
                      {"m": OWN, "q": quantity}, ADMIN)
            if quantity > available:
                break
        self.call("mutation { addPrintRun(quantity: 7) { available } }", None, ADMIN)
        return {}


ROWS = {
    "registerSupportPoint": Row(
        f"mutation($input: SupportPointInput!) {{ registerSupportPoint(input: $input) {{ {POINT} }} }}",
        lambda w: {"input": w.point_input(OWN)}, event="support_point.registered",
        read=point_read),
    "updateSupportPoint": Row(
        f"""mutation($id: ID!, $input: SupportPointInput!, $v: Int!) {{
            updateSupportPoint(id: $id, input: $input, expectedVersion: $v) {{ {POINT} }} }}""",
        lambda w: (lambda point: {"id": point["id"], "input": w.point_input(OWN),
                                  "v": point["version"]})(w.fresh_point(OWN)),
        event="support_point.updated", read=point_read),
    "deactivateSupportPoint": Row(
        on_id("deactivateSupportPoint", POINT, ', reason: "gesloten"'),
        lambda w: {"id": w.fresh_point(OWN)["id"]}, event="support_point.deactivated",
        read=point_read),
    "requestDeclaration": Row(
        f"""mutation($input: DeclarationRequestInput!) {{ requestDeclaration(input: $input) {{
            {DECLARATION} }} }}""",
        lambda w: {"input": w.declaration_input(w.bsn)}, bearer="caregiver",
        event="declaration.requested", read=declaration_read),
    "decideDeclaration": Row(
        on_id("decideDeclaration", DECLARATION, ", decision: ISSUE"),
        lambda w: {"id": w.fresh_declaration(STAFF)["id"]}, bearer=STAFF,
        event="declaration.issued", read=declaration_read),
    "revokeDeclaration": Row(
        on_id("revokeDeclaration", DECLARATION, ', reason: "verhuisd"'),
        lambda w: {"id": w.fresh_issued_declaration(STAFF)["id"]}, bearer=STAFF,
        event="declaration.revoked", read=declaration_read),
    "renewVerificationCode": Row(
        on_id("renewVerificationCode", DECLARATION),
        lambda w: {"id": w.fresh_issued_declaration(STAFF)["id"]}, bearer=STAFF,
        read=declaration_read),
    "setDeclarationSettings": Row(
        """mutation($m: String!) { setDeclarationSettings(municipalityCode: $m,
            input: {validityMonths: 18}) {
            municipalityCode minCareMonths minHoursPerWeek validityMonths purposes } }""",
        lambda w: {"m": OTHER},
        read=lambda answer: ("query($m: String!) { declarationSettings(municipalityCode: $m) {"
                             " validityMonths minCareMonths } }", {"m": OTHER})),
    "submitTravelClaim": Row(
        f"mutation($input: TravelClaimInput!) {{ submitTravelClaim(input: $input) {{ {CLAIM} }} }}",
        lambda w: {"input": w.claim_input()}, bearer="caregiver",
        event="travel_claim.submitted",
        read=lambda answer: ("query { myTravelClaims { " + CLAIM + " } }", {})),
    "reviewTravelClaim": Row(
        on_id("reviewTravelClaim", CLAIM, ', approve: false, reason: "geen reis"'),
        lambda w: {"id": w.fresh_claim()["id"]}, bearer=FUND,
        event="travel_claim.rejected", read=claims_read),
    "createPayoutBatch": Row(
        f"mutation {{ createPayoutBatch {{ {BATCH} }} }}",
        lambda w: w.approved_claim() and {}, bearer=FUND, read=batches_read),
    "releasePayoutBatch": Row(
        on_id("releasePayoutBatch", BATCH),
        lambda w: {"id": w.proposed_batch()["id"]}, bearer=FUND,
        # its claims become PAID, each with one event
        event="travel_claim.paid", ids=lambda answer: None, read=batches_read),
    "addPrintRun": Row(
        "mutation { addPrintRun(quantity: 13) { printed allocated shipped available } }",
        bearer=CAMPAIGN_STAFF, read=orders_read),
    "orderInformationBags": Row(
        f"""mutation($m: String!) {{ orderInformationBags(municipalityCode: $m, quantity: 3,
            localInserts: ["Koffie-ochtend elke dinsdag"]) {{ {ORDER} localInserts }} }}""",
        lambda w: {"m": OWN}, event="bag_order.requested", read=orders_read),
    "markBagOrderShipped": Row(
        on_id("markBagOrderShipped", ORDER),
        lambda w: {"id": w.fresh_bag_order("ALLOCATED")["id"]}, bearer=CAMPAIGN_STAFF,
        event="bag_order.shipped", read=orders_read),
    "markBagOrderDelivered": Row(
        on_id("markBagOrderDelivered", ORDER),
        lambda w: {"id": w.fresh_bag_order("SHIPPED")["id"]}, bearer=CAMPAIGN_STAFF,
        event="bag_order.delivered", read=orders_read),
    "cancelBagOrder": Row(
        on_id("cancelBagOrder", ORDER, ', reason: "te veel"'),
        lambda w: {"id": w.fresh_bag_order()["id"]}, bearer=STAFF,
        event="bag_order.cancelled", read=orders_read),
    "runBagAllocation": Row(
        f"mutation {{ runBagAllocation {{ {ROUND} }} }}",
        lambda w: w.ordered_bags(), bearer=CAMPAIGN_STAFF, event="bag_order.allocated",
        ids=allocated_orders, read=orders_read),
    "createCampaign": Row(
        f"mutation($input: CampaignInput!) {{ createCampaign(input: $input) {{ {CAMPAIGN} }} }}",
        lambda w: {"input": w.campaign_input()}, bearer=CAMPAIGN_STAFF,
        event="campaign.created", read=campaigns_read),
    "launchCampaign": Row(
        on_id("launchCampaign", CAMPAIGN),
        lambda w: {"id": w.fresh_campaign()["id"]}, bearer=CAMPAIGN_STAFF,
        event="campaign.launched", read=campaigns_read),
    "optOutOfCampaign": Row(
        f"""mutation($id: ID!, $m: String!) {{ optOutOfCampaign(id: $id, municipalityCode: $m) {{
            {CAMPAIGN} }} }}""",
        lambda w: {"id": w.fresh_campaign("REGIONAL")["id"], "m": OWN}, bearer=STAFF,
        event="campaign.opted_out", read=campaigns_read),
}


class EventTap:
    """A queue of the test's own bound to every service's events: every event from now on,
    kept as read."""

    def __init__(self, amqp_uri):
        self.amqp_uri = amqp_uri
        self.name = f"retry-tap-{uuid.uuid4().hex[:8]}"
        self.seen = []

    def queues(self, channel):
        return [Queue(self.name, get_event_exchange(service, {}), routing_key="#",
                      durable=False, auto_delete=False)(channel) for service in SERVICE_NAMES]

    def __enter__(self):
        with Connection(self.amqp_uri) as connection:
            for queue in self.queues(connection.channel()):
                queue.declare()
        return self

    def __exit__(self, *_exc):
        with Connection(self.amqp_uri) as connection:
            self.queues(connection.channel())[0].delete()

    def read(self):
        with Connection(self.amqp_uri) as connection:
            self.seen.extend(drain(self.queues(connection.channel())[0]))
        return self.seen

    def ids(self, event_type, of=None, since=0):
        """The event ids of ``event_type`` per payload id (only of the ids ``of``), of the
        events seen from the ``since``-th on."""
        found = {}
        for body in self.seen[since:]:
            if body["type"] != event_type:
                continue
            subject = body["payload"]["id"]
            if of is None or subject in of:
                found.setdefault(subject, set()).add(body["event_id"])
        return found


def send(gql, row, variables, bearer, key):
    return gql.post(row.query, variables, token=bearer, headers={"Idempotency-Key": key})


@contextmanager
def gateway_stopped(platform):
    """The gateway stopped for the block, then started again and answering."""
    gateway = process_named("gateway")
    platform.stop_process(gateway)
    yield
    platform.start_process(gateway)
    platform.wait_until_healthy(names=["gateway"])


def set_environ(platform, settings):
    """``settings`` in the environment of the processes started from now on (a value None:
    the setting left out)."""
    for name, value in settings.items():
        if value is None:
            platform.environ.pop(name, None)
        else:
            platform.environ[name] = value


def restart_gateway_without_its_database(platform):
    """The gateway stopped, its database gone (its record of every key), started again."""
    with gateway_stopped(platform):
        database = Path(platform.environ["MANTELZORG_DATA_DIR"]) / "mantelzorg_gateway"
        assert database.exists(), database
        shutil.rmtree(database)


@pytest.fixture(scope="module")
def first_runs(gql, platform, pc4_areas):
    """Every row's first run with a key of its own, then the gateway restarted without its
    database. {mutation: (variables, bearer, key, first answer, read before the retry)}."""
    world = RetryWorld(gql)
    amqp = platform.environ["AMQP_URI"]
    with EventTap(amqp) as tap:
        runs = {}
        for name, row in ROWS.items():
            variables = row.make(world) or {}
            bearer = world.caregiver if row.bearer == "caregiver" else row.bearer
            key = uuid.uuid4().hex
            first = send(gql, row, variables, bearer, key)
            assert first.status_code == 200, (name, first.text)
            assert "errors" not in first.json(), (name, first.json())
            runs[name] = (variables, bearer, key, first.json())
        reads = {name: read_of(gql, ROWS[name], runs[name][1], runs[name][3]["data"][name])
                 for name in ROWS}
        restart_gateway_without_its_database(platform)
        yield {"runs": runs, "reads": reads, "tap": tap, "world": world}


def read_of(gql, row, bearer, answer):
    if row.read is None:
        return None
    query, variables, *reader = row.read(answer)
    read = gql(query, variables, token=reader[0] if reader else bearer)
    assert "errors" not in read, read
    return read["data"]


def test_the_table_covers_every_mutation():
    from graphql import build_schema

    from tests.unit.test_contract import CONTRACT

    contract = build_schema(CONTRACT.read_text())
    assert set(ROWS) == {*contract.mutation_type.fields,
                         *schema.graphql_schema.mutation_type.fields}


def send_twice(gql, runs):
    """Each row's retry with its key, in the table's order, then once more (answered from the
    gateway's own record by then). {mutation: (the retry's response, the second's)}."""
    sent = {}
    for name, row in ROWS.items():
        variables, bearer, key = runs[name][:3]
        sent[name] = (send(gql, row, variables, bearer, key),
                      send(gql, row, variables, bearer, key))
    return sent


def expected_events(row, answer):
    """(how many events of the row's type, of which ids: None for any) the answer announces,
    or None when its work announces none."""
    if row.event is None:
        return None
    ids = row.ids(answer)
    if ids is None:   # a payout batch: the claims it paid, of the events since
        return answer["claimCount"], None
    return len(ids), set(ids)


def let_events_arrive(tap, answers, since=0):
    """Until every event the answers announce was tapped (or 30 s), then long enough for
    a second event of any of them, had there been one, to be relayed; ``answers`` is
    {mutation: its answer's data, or None}."""
    wanted = []
    for name, answer in answers.items():
        expected = expected_events(ROWS[name], answer) if answer else None
        if expected is not None:
            wanted.append((ROWS[name].event, *expected))

    def arrived():
        tap.read()
        return all(len(tap.ids(event, of, since)) >= count for event, count, of in wanted)
    eventually(arrived, timeout=30, interval=0.3)
    eventlet.sleep(1.5)   # a second event, had there been one, has been relayed by now
    tap.read()


def answer_of(response, mutation):
    """The data a mutation's response answered, or None (an error, or not JSON)."""
    try:
        return (response.json().get("data") or {}).get(mutation)
    except ValueError:
        return None


@pytest.fixture(scope="module")
def retried(gql, first_runs):
    """Every row retried after the gateway lost its keys, and its events given time."""
    runs = first_runs["runs"]
    sent = send_twice(gql, runs)
    let_events_arrive(first_runs["tap"], {name: runs[name][3]["data"][name] for name in ROWS})
    return sent


@pytest.mark.parametrize("mutation", list(ROWS))
def test_a_retry_after_the_gateway_lost_the_key_gets_the_first_answer(gql, first_runs, retried,
                                                                      mutation):
    row = ROWS[mutation]
    _variables, bearer, _key, first = first_runs["runs"][mutation]
    retry, again = retried[mutation]
    assert retry.status_code == 200, retry.text
    assert retry.json() == first
    # once more, now answered from the gateway's own record again
    assert again.json() == first
    answer = first["data"][mutation]
    assert read_of(gql, row, bearer, answer) == first_runs["reads"][mutation]
    one_event_each(first_runs["tap"], row, answer)


def one_event_each(tap, row, answer, since=0):
    """Exactly one event of the row's type for each thing the answer changed (of those
    tapped from ``since`` on, after ``let_events_arrive``)."""
    expected = expected_events(row, answer)
    if expected is None:
        return
    wanted, of = expected
    assert wanted > 0, answer
    tap.read()
    found = tap.ids(row.event, of, since)
    assert len(found) == wanted and all(len(events) == 1 for events in found.values()), found


def test_without_the_key_a_step_already_made_is_what_it_is(gql, first_runs):
    """The retry's first answer came from the service's record of the request, not from a
    step that can be made again: sent without a key the same decision is a CONFLICT."""
    variables, bearer, _key, _first = first_runs["runs"]["decideDeclaration"]
    assert error_codes(gql(ROWS["decideDeclaration"].query, variables, token=bearer)) == \
        ["CONFLICT"]


@pytest.fixture(scope="module")
def unrun_first(gql, platform, first_runs):
    """Every row's preconditions again, then its first run sent with a new key while its
    service is down: answered UNAVAILABLE, expired on the broker, never run.
    {mutation: (variables, bearer, key, the events tapped before)}."""
    world, tap = first_runs["world"], first_runs["tap"]
    made = {}
    # A payout batch proposed for the release takes every approved claim: the claim the
    # batch row will pay is approved after it.
    for name in sorted(ROWS, key=lambda name: name == "createPayoutBatch"):
        row = ROWS[name]
        made[name] = (row.make(world) or {},
                      world.caregiver if row.bearer == "caregiver" else row.bearer)
    before = {name: platform.environ.get(name) for name in SHORT_TIMEOUTS}
    # Starting a process takes the most time here: each service is stopped while the one
    # before it starts (its rows are sent once that one answers), the first while the
    # gateway restarts, and the last starts while the gateway restarts again.
    with gateway_stopped(platform):
        set_environ(platform, SHORT_TIMEOUTS)
        platform.stop_process(process_named(STOPPED_IN_TURN[0]))
    try:
        tap.read()
        since = len(tap.seen)
        runs = {}
        for number, service in enumerate(STOPPED_IN_TURN):
            platform.stop_process(process_named(service))
            if number:
                platform.wait_until_healthy(names=[STOPPED_IN_TURN[number - 1]])
            names = [name for name in ROWS if SERVICE_OF.get(name, "campaign") == service]
            keys = {name: uuid.uuid4().hex for name in names}
            # sent together: each waits for the gateway's timeout, not one after the other
            pool = eventlet.GreenPool(len(names))
            answers = dict(zip(names, pool.imap(
                lambda name: send(gql, ROWS[name], *made[name], keys[name]).json(), names)))
            for name in names:
                assert error_codes(answers[name]) == ["UNAVAILABLE"], (name, answers[name])
                runs[name] = (*made[name], keys[name], since)
            platform.start_process(process_named(service))
    finally:
        for service in STOPPED_IN_TURN:   # also when a row failed with its service down
            if service not in platform.children:
                platform.start_process(process_named(service))
        with gateway_stopped(platform):
            set_environ(platform, before)
        platform.wait_until_healthy(names=list(STOPPED_IN_TURN))
    return runs


@pytest.fixture(scope="module")
def retried_unrun(gql, first_runs, unrun_first):
    """Every row whose first run did not happen retried, and its events given time."""
    sent = send_twice(gql, unrun_first)
    since = next(iter(unrun_first.values()))[3]
    let_events_arrive(first_runs["tap"],
                      {name: answer_of(sent[name][0], name) for name in ROWS}, since)
    return sent


@pytest.mark.parametrize("mutation", list(ROWS))
def test_a_retry_of_a_first_run_that_did_not_happen_runs_once(first_runs, unrun_first,
                                                               retried_unrun, mutation):
    since = unrun_first[mutation][3]
    retry, again = retried_unrun[mutation]
    retried = retry.json()
    assert "errors" not in retried, retried
    assert again.json() == retried
    one_event_each(first_runs["tap"], ROWS[mutation], retried["data"][mutation], since)
