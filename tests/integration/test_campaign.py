"""Information bags and the #deeljezorg campaign through the GraphQL contract, on the real
broker and the embedded store: the read model of the registry's events, the stock under
concurrent orders, the order workflow, allocation rounds, local inserts, campaigns,
authorisation and bad input."""
import io
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timedelta

import pypdf
import pytest
import requests
from kombu import Connection, Queue
from nameko.standalone.events import get_event_exchange

from common.events import new_envelope
from common.publishing import CORRELATION_HEADER, publish
from common.storage import REQUEST_KEY
from tests.support import Handled, error_codes, eventually, scrape, support_point_count, token

ADMIN = token("admin")
TEAM = token("campaign")
ORDER_FIELDS = """id municipalityCode supportPointId quantityRequested quantityAllocated status
    localInserts createdAt history { fromStatus toStatus action quantity actorRole reason }"""
ORDER = f"""mutation($m: String!, $p: ID, $q: Int!, $lines: [String!]) {{
    orderInformationBags(municipalityCode: $m, supportPointId: $p, quantity: $q,
                         localInserts: $lines) {{ {ORDER_FIELDS} }} }}"""
ORDERS = f"query($m: String) {{ bagOrders(municipalityCode: $m) {{ {ORDER_FIELDS} }} }}"
SHIP = f"mutation($id: ID!) {{ markBagOrderShipped(id: $id) {{ {ORDER_FIELDS} }} }}"
DELIVER = f"mutation($id: ID!) {{ markBagOrderDelivered(id: $id) {{ {ORDER_FIELDS} }} }}"
CANCEL = f"""mutation($id: ID!, $reason: String!) {{
    cancelBagOrder(id: $id, reason: $reason) {{ {ORDER_FIELDS} }} }}"""
STOCK = "{ bagStock { printed available allocated shipped } }"
PRINT = "mutation($q: Int!) { addPrintRun(quantity: $q) { printed available allocated shipped } }"
ROUND = f"""mutation {{ runBagAllocation {{ id availableBefore allocated createdAt
    allocations {{ allocatedNow explanation order {{ {ORDER_FIELDS} }} }} }} }}"""
CAMPAIGN_FIELDS = """id name hashtag scope municipalityCodes startsOn endsOn launched
    reachedSupportPoints optedOutMunicipalityCodes materials"""
CREATE = f"""mutation($input: CampaignInput!) {{
    createCampaign(input: $input) {{ {CAMPAIGN_FIELDS} }} }}"""
LAUNCH = f"mutation($id: ID!) {{ launchCampaign(id: $id) {{ {CAMPAIGN_FIELDS} }} }}"
OPT_OUT = f"""mutation($id: ID!, $m: String!) {{
    optOutOfCampaign(id: $id, municipalityCode: $m) {{ {CAMPAIGN_FIELDS} }} }}"""
CAMPAIGNS = f"{{ campaigns {{ {CAMPAIGN_FIELDS} }} }}"
REGISTER = """mutation($input: SupportPointInput!) {
    registerSupportPoint(input: $input) { id version } }"""
UPDATE = """mutation($id: ID!, $input: SupportPointInput!, $v: Int!) {
    updateSupportPoint(id: $id, input: $input, expectedVersion: $v) { id version } }"""
DEACTIVATE = """mutation($id: ID!) { deactivateSupportPoint(id: $id, reason: "closed") {
    id active } }"""

# Municipalities no other test module uses, with their CBS populations of 2023.
EMMEN, ASSEN, URK = "GM0114", "GM0106", "GM0184"
MEPPEL, KAMPEN, DALFSEN, OMMEN = "GM0119", "GM0166", "GM0148", "GM0175"


def municipality(code):
    return token("municipality", municipality=code)


def ok(answer, field):
    assert "errors" not in answer, answer
    return answer["data"][field]


def stock(gql):
    return ok(gql(STOCK, token=TEAM), "bagStock")


def order(gql, code, quantity, as_token=None, **extra):
    return ok(gql(ORDER, {"m": code, "q": quantity, **extra},
                  token=as_token or municipality(code)), "orderInformationBags")


def point_input(seat, name=None, **changes):
    data = {"name": name or f"Steunpunt {uuid.uuid4().hex[:8]}", "kind": "LOCAL",
            "municipalityCode": seat,
            "address": {"street": "Markt", "houseNumber": "7", "postcode": "7811 AB",
                        "city": "Emmen"},
            "phone": "0591-12 34 56", "website": "https://steunpunt.example.org/",
            "areas": ["INFORMATION"]}
    data.update(changes)
    return data


def register(gql, data):
    return ok(gql(REGISTER, {"input": data}, token=ADMIN), "registerSupportPoint")


def assert_invariant(figures):
    assert figures["printed"] == figures["available"] + figures["allocated"] + figures["shipped"]
    assert min(figures.values()) >= 0


def drain_available(gql):
    """Takes whatever is available into an allocated order, so a test starts from zero."""
    available = stock(gql)["available"]
    if available:
        order(gql, MEPPEL, available, ADMIN)
    assert stock(gql)["available"] == 0


def cancel_waiting(gql):
    """Cancels the waiting orders of earlier tests, so a round shares over this test's only."""
    for found in ok(gql(ORDERS, token=ADMIN), "bagOrders"):
        if found["status"] == "REQUESTED":
            ok(gql(CANCEL, {"id": found["id"], "reason": "test starts afresh"}, token=ADMIN),
               "cancelBagOrder")


@pytest.fixture(scope="module")
def ready(gql, municipalities):
    """The campaign's read model knows every municipality (it follows the registry's events)."""
    codes = [EMMEN, ASSEN, URK, MEPPEL, KAMPEN, DALFSEN, OMMEN]
    probe = {"name": "probe", "hashtag": "#deeljezorg", "scope": "REGIONAL",
             "municipalityCodes": codes, "startsOn": "2026-01-01", "endsOn": "2026-01-02",
             "materials": ["poster"]}
    assert eventually(lambda: "errors" not in gql(CREATE, {"input": probe}, token=TEAM), 60)


@pytest.fixture
def campaign_events(amqp_uri):
    """Every event the campaign service publishes while a test runs."""
    with Connection(amqp_uri) as connection:
        queue = Queue(f"campaign-probe-{uuid.uuid4().hex[:6]}",
                      exchange=get_event_exchange("campaign", {}), routing_key="#",
                      auto_delete=False)(connection.channel())
        queue.declare()

        def received():
            bodies = []
            while (message := queue.get(no_ack=True)) is not None:
                bodies.append(message.decode())
            return bodies

        yield received
        queue.delete()


# --- the read model of the registry's events ------------------------------------------------

def _republish(amqp_uri, envelope):
    with Connection(amqp_uri, transport_options={"confirm_publish": True}) as connection:
        publish(connection, envelope.model_dump(mode="json"), get_event_exchange("registry", {}),
                envelope.type, {CORRELATION_HEADER: envelope.correlation_id})


def test_the_read_model_follows_registered_updated_and_deactivated_points(
        gql, platform, amqp_uri, ready):
    metrics = f"http://{platform.environ['CAMPAIGN_WEB_ADDRESS']}/metrics"
    duplicates = ('mantelzorg_events_handled_total{outcome="duplicate",service="campaign",'
                  'type="support_point.registered"}')
    ok(gql(PRINT, {"q": 100}, token=TEAM), "addPrintRun")
    registered = Handled(platform, "campaign", "support_point.registered")
    created = register(gql, point_input(KAMPEN, "Steunpunt Kampen"))
    assert registered.grown_by(1)
    placed = order(gql, KAMPEN, 2, lines=["Gemeente Kampen: 14 038"])
    assert placed["status"] == "ALLOCATED"
    assert placed["localInserts"] == [
        "Steunpunt Kampen · Markt 7, 7811 AB Emmen · 0591-12 34 56 · "
        "https://steunpunt.example.org/", "Gemeente Kampen: 14 038"]

    updates = ('mantelzorg_events_handled_total{outcome="handled",service="campaign",'
               'type="support_point.updated"}')
    updates_before = scrape(metrics, updates)
    renamed = ok(gql(UPDATE, {"id": created["id"], "v": 1,
                              "input": point_input(KAMPEN, "Mantelzorg Kampen", phone=None)},
                     token=ADMIN), "updateSupportPoint")
    assert renamed["version"] == 2
    assert eventually(lambda: scrape(metrics, updates) == updates_before + 1)
    assert order(gql, KAMPEN, 1)["localInserts"][0].startswith("Mantelzorg Kampen · Markt 7")

    # the first event again, twice: older than what is kept, then a duplicate
    seen_before = scrape(metrics, duplicates)
    stale = new_envelope("support_point.registered", {
        "id": created["id"], "name": "Steunpunt Kampen", "kind": "LOCAL",
        "municipality_code": KAMPEN, "serves_municipality_codes": [KAMPEN],
        "areas": ["INFORMATION"], "active": True, "version": 1}, "test-redelivery", "registry")
    _republish(amqp_uri, stale)
    _republish(amqp_uri, stale)
    assert eventually(lambda: scrape(metrics, duplicates) == seen_before + 1)
    assert order(gql, KAMPEN, 1)["localInserts"][0] == \
        "Mantelzorg Kampen · Markt 7, 7811 AB Emmen · https://steunpunt.example.org/"

    deactivated = Handled(platform, "campaign", "support_point.deactivated")
    ok(gql(DEACTIVATE, {"id": created["id"]}, token=ADMIN), "deactivateSupportPoint")
    assert deactivated.grown_by(1)
    assert order(gql, KAMPEN, 1)["localInserts"] == []


# --- the stock ------------------------------------------------------------------------------

def test_the_stock_holds_under_many_concurrent_orders_ships_and_cancels(gql, platform, ready):
    drain_available(gql)
    before = ok(gql(PRINT, {"q": 1000}, token=TEAM), "addPrintRun")
    assert before["available"] == 1000
    codes = [EMMEN, ASSEN, URK, DALFSEN, OMMEN]
    size, count = 37, 40      # 1,480 bags asked for, 1,000 available: 27 orders fit

    def place(index):
        code = codes[index % len(codes)]
        return order(gql, code, size, municipality(code))

    with ThreadPoolExecutor(max_workers=20) as pool:
        placed = list(pool.map(place, range(count)))
    allocated = [o for o in placed if o["status"] == "ALLOCATED"]
    assert len(allocated) == 1000 // size == 27
    assert all(o["quantityAllocated"] == size for o in allocated)
    assert all(o["status"] == "REQUESTED" and o["quantityAllocated"] == 0
               for o in placed if o not in allocated)
    after_orders = stock(gql)
    assert_invariant(after_orders)
    assert after_orders["available"] == 1000 - 27 * size
    assert after_orders["allocated"] == before["allocated"] + 27 * size

    # every allocated order is shipped and cancelled at the same moment: one of the two wins
    metrics = f"http://{platform.environ['CAMPAIGN_WEB_ADDRESS']}/metrics"
    shipped_before = {c: scrape(metrics, f'mantelzorg_bags_shipped_total{{municipality="{c}"}}')
                      for c in codes}

    def ship(found):
        return gql(SHIP, {"id": found["id"]}, token=TEAM)

    def cancel(found):
        return gql(CANCEL, {"id": found["id"], "reason": "ordered twice"}, token=TEAM)

    with ThreadPoolExecutor(max_workers=20) as pool:
        pairs = [(pool.submit(ship, found), pool.submit(cancel, found)) for found in allocated]
        answers = [(shipped.result(), cancelled.result()) for shipped, cancelled in pairs]
    outcomes = []
    for shipped, cancelled in answers:
        codes_of_pair = sorted(error_codes(shipped) + error_codes(cancelled))
        assert codes_of_pair == ["CONFLICT"], (shipped, cancelled)
        outcomes.append("errors" not in shipped)
    shipped_count = sum(outcomes)
    final = stock(gql)
    assert_invariant(final)
    assert final["shipped"] == before["shipped"] + shipped_count * size
    assert final["allocated"] == before["allocated"]
    assert final["available"] == 1000 - shipped_count * size
    shipped_by_code = {c: 0 for c in codes}
    for found, was_shipped in zip(allocated, outcomes):
        shipped_by_code[found["municipalityCode"]] += size if was_shipped else 0
    for code in codes:
        assert scrape(metrics, f'mantelzorg_bags_shipped_total{{municipality="{code}"}}') == \
            shipped_before[code] + shipped_by_code[code]


# --- the order workflow -----------------------------------------------------------------------

def test_an_order_moves_through_its_workflow_with_an_audit_trail_and_events(
        gql, campaign_events, ready):
    ok(gql(PRINT, {"q": 50}, token=TEAM), "addPrintRun")
    staff = municipality(OMMEN)
    placed = order(gql, OMMEN, 20, staff)
    assert (placed["status"], placed["quantityAllocated"]) == ("ALLOCATED", 20)
    assert error_codes(gql(DELIVER, {"id": placed["id"]}, token=TEAM)) == ["CONFLICT"]
    shipped = ok(gql(SHIP, {"id": placed["id"]}, token=TEAM), "markBagOrderShipped")
    assert shipped["status"] == "SHIPPED"
    assert error_codes(gql(SHIP, {"id": placed["id"]}, token=TEAM)) == ["CONFLICT"]
    assert error_codes(gql(CANCEL, {"id": placed["id"], "reason": "late"}, token=staff)) == \
        ["CONFLICT"]
    delivered = ok(gql(DELIVER, {"id": placed["id"]}, token=ADMIN), "markBagOrderDelivered")
    assert delivered["status"] == "DELIVERED"
    assert [(h["fromStatus"], h["toStatus"], h["action"], h["actorRole"])
            for h in delivered["history"]] == [
        (None, "REQUESTED", "request", "municipality"),
        ("REQUESTED", "ALLOCATED", "allocate", "system"),
        ("ALLOCATED", "SHIPPED", "ship", "campaign"),
        ("SHIPPED", "DELIVERED", "deliver", "admin")]
    assert_invariant(stock(gql))

    drain_available(gql)
    waiting = order(gql, OMMEN, 30, staff)
    assert waiting["status"] == "REQUESTED"
    refused = gql(SHIP, {"id": waiting["id"]}, token=TEAM)
    assert error_codes(refused) == ["CONFLICT"]
    assert "only an allocated order" in refused["errors"][0]["message"]
    no_reason = gql(CANCEL, {"id": waiting["id"], "reason": " "}, token=staff)
    assert error_codes(no_reason) == ["BAD_USER_INPUT"]
    assert no_reason["errors"][0]["extensions"]["field"] == "reason"
    cancelled = ok(gql(CANCEL, {"id": waiting["id"], "reason": "fewer needed"}, token=staff),
                   "cancelBagOrder")
    assert cancelled["status"] == "CANCELLED"
    assert cancelled["history"][-1]["reason"] == "fewer needed"
    assert error_codes(gql(SHIP, {"id": str(uuid.uuid4())}, token=TEAM)) == ["NOT_FOUND"]

    events = {}

    def all_seen():
        # Events may arrive over several polls, and not in the order they happened (the
        # outbox publishes in batches): each poll adds to what came before, and the order is
        # told by when each happened.
        for body in campaign_events():
            if body["payload"].get("id") in (placed["id"], waiting["id"]):
                events.setdefault(body["payload"]["id"], []).append(
                    (datetime.fromisoformat(body["occurred_at"]), body["type"]))
        return len(events.get(placed["id"], [])) == 4 and len(events.get(waiting["id"], [])) == 2

    def in_order(order_id, lifecycle):
        happened = dict((kind, at) for at, kind in events[order_id])
        assert sorted(happened) == sorted(lifecycle)
        times = [happened[kind] for kind in lifecycle]
        return times == sorted(times)

    assert eventually(all_seen)
    assert in_order(placed["id"], ["bag_order.requested", "bag_order.allocated",
                                   "bag_order.shipped", "bag_order.delivered"])
    assert in_order(waiting["id"], ["bag_order.requested", "bag_order.cancelled"])


# --- allocation rounds ------------------------------------------------------------------------

def test_a_round_shares_the_stock_by_population_with_largest_remainders(gql, ready):
    cancel_waiting(gql)
    drain_available(gql)
    emmen_first = order(gql, EMMEN, 300)
    emmen_second = order(gql, EMMEN, 200)
    assen = order(gql, ASSEN, 300, lines=["Loket Assen: 0592-36 69 11"])
    urk = order(gql, URK, 10)
    assert {o["status"] for o in (emmen_first, emmen_second, assen, urk)} == {"REQUESTED"}
    ok(gql(PRINT, {"q": 600}, token=TEAM), "addPrintRun")

    result = ok(gql(ROUND, token=TEAM), "runBagAllocation")
    # Populations 108,765 (Emmen), 69,414 (Assen), 21,829 (Urk). Urk's exact share, 65.48 of
    # 600, covers its 10: it gets 10. The 590 left: Emmen 360.15, Assen 229.85; the one bag
    # left after rounding down goes to the larger remainder, Assen's.
    assert (result["availableBefore"], result["allocated"]) == (600, 600)
    given = {a["order"]["id"]: a for a in result["allocations"]}
    assert {key: given[o["id"]]["allocatedNow"] for key, o in (
        ("emmen 1", emmen_first), ("emmen 2", emmen_second), ("assen", assen), ("urk", urk))} \
        == {"emmen 1": 300, "emmen 2": 60, "assen": 230, "urk": 10}
    assert [a["order"]["id"] for a in result["allocations"]] == \
        [emmen_first["id"], emmen_second["id"], assen["id"], urk["id"]]
    assert given[urk["id"]]["explanation"].startswith(
        "Urk (GM0184) still needed 10 bags, no more than its exact share of 65.48")
    assert given[assen["id"]]["explanation"] == (
        "Assen (GM0106) gets 230 bags: its population of 69,414 out of 178,179 in the 2 "
        "municipalities sharing the 590 bags left once 10 bags went to municipalities whose "
        "share covered all they needed gives an exact share of 229.85; 229 whole plus 1 for "
        "the largest remainder (0.85). This order, its only waiting order, gets 230; it waits "
        "for 70 more.")
    assert "its remainder (0.15) was not the largest" in given[emmen_first["id"]]["explanation"]
    assert "it waits for 140 more" in given[emmen_second["id"]]["explanation"]
    second = given[emmen_second["id"]]["order"]
    assert (second["status"], second["quantityAllocated"]) == ("REQUESTED", 60)
    assert second["history"][-1]["action"] == "allocate_part"
    assert given[emmen_first["id"]]["order"]["status"] == "ALLOCATED"
    figures = stock(gql)
    assert figures["available"] == 0
    assert_invariant(figures)

    # a partly allocated order that is cancelled gives its bags back
    cancelled = ok(gql(CANCEL, {"id": emmen_second["id"], "reason": "no longer needed"},
                       token=municipality(EMMEN)), "cancelBagOrder")
    assert (cancelled["status"], cancelled["history"][-1]["quantity"]) == ("CANCELLED", 60)
    assert stock(gql)["available"] == 60

    ok(gql(PRINT, {"q": 100}, token=TEAM), "addPrintRun")
    rest = ok(gql(ROUND, token=ADMIN), "runBagAllocation")
    assert (rest["availableBefore"], rest["allocated"]) == (160, 70)
    finished = rest["allocations"][0]["order"]
    assert (finished["id"], finished["status"], finished["quantityAllocated"]) == \
        (assen["id"], "ALLOCATED", 300)
    assert finished["localInserts"][-1] == "Loket Assen: 0592-36 69 11"
    assert stock(gql)["available"] == 90
    empty = ok(gql(ROUND, token=TEAM), "runBagAllocation")
    assert (empty["availableBefore"], empty["allocated"], empty["allocations"]) == (90, 0, [])


# --- local inserts ----------------------------------------------------------------------------

def test_the_local_insert_prints_for_those_who_may_see_the_order(gql, platform, ready):
    registered = Handled(platform, "campaign", "support_point.registered")
    register(gql, point_input(DALFSEN, "Steunpunt Dalfsen"))
    ok(gql(PRINT, {"q": 10}, token=TEAM), "addPrintRun")
    assert registered.grown_by(1)
    placed = order(gql, DALFSEN, 5, lines=["Gemeente Dalfsen helpt: 14 0529"])
    assert placed["localInserts"][0].startswith("Steunpunt Dalfsen · Markt 7")
    url = f"{platform.gateway_url()}/bag-orders/{placed['id']}/insert.pdf"

    def get(as_token=None, address=url):
        headers = {"Authorization": f"Bearer {as_token}"} if as_token else {}
        return requests.get(address, headers=headers, timeout=30)

    printed = get(municipality(DALFSEN))
    assert printed.status_code == 200 and printed.headers["Content-Type"] == "application/pdf"
    text = "".join(page.extract_text() for page in pypdf.PdfReader(
        io.BytesIO(printed.content)).pages)
    assert "Mantelzorg in Dalfsen" in text and "Steunpunt Dalfsen" in text
    assert "Markt 7, 7811 AB Emmen" in text and "Gemeente Dalfsen helpt: 14 0529" in text
    assert get(TEAM).status_code == 200
    assert get(municipality(OMMEN)).status_code == 403
    assert get(token("partner")).status_code == 403
    assert get().status_code == 401
    assert get(ADMIN, url.replace(placed["id"], str(uuid.uuid4()))).status_code == 404
    drain_available(gql)
    waiting = order(gql, DALFSEN, 5)
    not_yet = get(ADMIN, url.replace(placed["id"], waiting["id"]))
    assert not_yet.status_code == 409 and error_codes(not_yet.json()) == ["CONFLICT"]


# --- campaigns --------------------------------------------------------------------------------

def campaign_input(scope="NATIONAL", codes=None, **changes):
    data = {"name": f"#deeljezorg {uuid.uuid4().hex[:6]}", "hashtag": "deeljezorg",
            "scope": scope, "municipalityCodes": codes,
            "startsOn": date.today().isoformat(),
            "endsOn": (date.today() + timedelta(days=60)).isoformat(),
            "materials": ["poster A2", "flyer", "social media kit"]}
    data.update(changes)
    return data


def reached(gql, campaign_id):
    found = {c["id"]: c for c in ok(gql(CAMPAIGNS, token=TEAM), "campaigns")}
    return found[campaign_id]["reachedSupportPoints"]


def test_a_national_campaign_reaches_every_active_point_once_also_points_registered_later(
        gql, platform, amqp_uri, ready):
    metrics = f"http://{platform.environ['CAMPAIGN_WEB_ADDRESS']}/metrics"
    duplicates = ('mantelzorg_events_handled_total{outcome="duplicate",service="campaign",'
                  'type="support_point.registered"}')
    created = ok(gql(CREATE, {"input": campaign_input()}, token=TEAM), "createCampaign")
    assert (created["launched"], created["reachedSupportPoints"], created["hashtag"]) == \
        (False, 0, "#deeljezorg")
    active = support_point_count(gql)   # the registry's, which the read model follows
    launched = ok(gql(LAUNCH, {"id": created["id"]}, token=TEAM), "launchCampaign")
    assert (launched["launched"], launched["reachedSupportPoints"]) == (True, active)
    again = ok(gql(LAUNCH, {"id": created["id"]}, token=ADMIN), "launchCampaign")
    assert again["reachedSupportPoints"] == active

    newcomer = register(gql, point_input(OMMEN))
    assert eventually(lambda: reached(gql, created["id"]) == active + 1)
    # the registration event delivered once more distributes nothing more
    repeated = new_envelope("support_point.registered", {
        "id": newcomer["id"], "name": "Steunpunt", "kind": "LOCAL", "municipality_code": OMMEN,
        "serves_municipality_codes": [OMMEN], "areas": ["INFORMATION"], "active": True,
        "version": 1}, "test-repeat", "registry")
    seen_before = scrape(metrics, duplicates)
    _republish(amqp_uri, repeated)
    _republish(amqp_uri, repeated)
    assert eventually(lambda: scrape(metrics, duplicates) == seen_before + 1)
    assert reached(gql, created["id"]) == active + 1
    deactivated = Handled(platform, "campaign", "support_point.deactivated")
    ok(gql(DEACTIVATE, {"id": newcomer["id"]}, token=ADMIN), "deactivateSupportPoint")
    assert deactivated.grown_by(1)
    assert reached(gql, created["id"]) == active + 1
    assert ok(gql(LAUNCH, {"id": created["id"]}, token=TEAM),
              "launchCampaign")["reachedSupportPoints"] == active + 1

    # a campaign launched after the deactivation does not reach the deactivated point
    later = ok(gql(CREATE, {"input": campaign_input()}, token=ADMIN), "createCampaign")
    assert ok(gql(LAUNCH, {"id": later["id"]}, token=TEAM),
              "launchCampaign")["reachedSupportPoints"] == active
    opted = gql(OPT_OUT, {"id": created["id"], "m": OMMEN}, token=municipality(OMMEN))
    assert error_codes(opted) == ["CONFLICT"]

    ended = ok(gql(CREATE, {"input": campaign_input(
        startsOn="2020-01-01", endsOn="2020-02-01")}, token=TEAM), "createCampaign")
    assert error_codes(gql(LAUNCH, {"id": ended["id"]}, token=TEAM)) == ["CONFLICT"]


def test_a_regional_campaign_skips_the_municipalities_that_opt_out(gql, platform, ready):
    registered = Handled(platform, "campaign", "support_point.registered")
    register(gql, point_input(URK))
    register(gql, point_input(MEPPEL))
    assert registered.grown_by(2)
    created = ok(gql(CREATE, {"input": campaign_input("REGIONAL", [URK, MEPPEL])}, token=TEAM),
                 "createCampaign")
    assert created["municipalityCodes"] == [URK, MEPPEL]
    assert error_codes(gql(OPT_OUT, {"id": created["id"], "m": MEPPEL},
                           token=municipality(URK))) == ["FORBIDDEN"]
    outside = gql(OPT_OUT, {"id": created["id"], "m": EMMEN}, token=municipality(EMMEN))
    assert error_codes(outside) == ["BAD_USER_INPUT"]
    opted = ok(gql(OPT_OUT, {"id": created["id"], "m": MEPPEL}, token=municipality(MEPPEL)),
               "optOutOfCampaign")
    assert opted["optedOutMunicipalityCodes"] == [MEPPEL]
    assert ok(gql(OPT_OUT, {"id": created["id"], "m": MEPPEL}, token=ADMIN),
              "optOutOfCampaign")["optedOutMunicipalityCodes"] == [MEPPEL]

    launched = ok(gql(LAUNCH, {"id": created["id"]}, token=TEAM), "launchCampaign")
    assert launched["reachedSupportPoints"] == support_point_count(gql, URK)
    assert launched["reachedSupportPoints"] >= 1
    registered = Handled(platform, "campaign", "support_point.registered")
    register(gql, point_input(MEPPEL))
    register(gql, point_input(URK))
    assert eventually(lambda: reached(gql, created["id"]) == launched["reachedSupportPoints"] + 1)
    # both points are known to the campaign, Meppel's is not reached
    assert registered.grown_by(2)
    assert reached(gql, created["id"]) == support_point_count(gql, URK)


def test_a_municipality_reads_only_the_campaigns_that_include_it(gql, ready):
    national = ok(gql(CREATE, {"input": campaign_input()}, token=TEAM), "createCampaign")
    naming = ok(gql(CREATE, {"input": campaign_input("REGIONAL", [KAMPEN, DALFSEN])},
                    token=TEAM), "createCampaign")
    elsewhere = ok(gql(CREATE, {"input": campaign_input("REGIONAL", [DALFSEN])}, token=TEAM),
                   "createCampaign")
    seen = {c["id"] for c in ok(gql(CAMPAIGNS, token=municipality(KAMPEN)), "campaigns")}
    assert {national["id"], naming["id"]} <= seen
    assert elsewhere["id"] not in seen
    assert all(c["scope"] == "NATIONAL" or KAMPEN in c["municipalityCodes"]
               for c in ok(gql(CAMPAIGNS, token=municipality(KAMPEN)), "campaigns"))
    everything = {c["id"] for c in ok(gql(CAMPAIGNS, token=TEAM), "campaigns")}
    assert {national["id"], naming["id"], elsewhere["id"]} <= everything


# --- authorisation and bad input ------------------------------------------------------------------

ROLES = ("caregiver", "municipality", "partner", "support_point", "fund", "campaign", "admin")


def test_who_may_do_what_follows_the_contract_table(gql, platform, ready):
    registered = Handled(platform, "campaign", "support_point.registered")
    point = register(gql, point_input(EMMEN))
    assert registered.grown_by(1)
    ok(gql(PRINT, {"q": 20}, token=TEAM), "addPrintRun")
    placed = order(gql, EMMEN, 1, ADMIN)
    regional = ok(gql(CREATE, {"input": campaign_input("REGIONAL", [EMMEN])}, token=TEAM),
                  "createCampaign")
    claims = {"municipality": {"municipality": EMMEN},
              "support_point": {"support_point": point["id"]}}

    def as_role(role):
        return token(role, **claims.get(role, {}))

    operations = [
        (STOCK, {}, ("campaign", "admin")),
        (PRINT, {"q": 1}, ("campaign", "admin")),
        (ORDER, {"m": EMMEN, "q": 1}, ("municipality", "support_point", "campaign", "admin")),
        (ORDERS, {"m": EMMEN}, ("municipality", "support_point", "campaign", "admin")),
        (CANCEL, {"id": str(uuid.uuid4()), "reason": "x"},
         ("municipality", "support_point", "campaign", "admin")),
        (SHIP, {"id": placed["id"]}, ("campaign", "admin")),
        (DELIVER, {"id": str(uuid.uuid4())}, ("campaign", "admin")),
        (ROUND, {}, ("campaign", "admin")),
        (CREATE, {"input": campaign_input()}, ("campaign", "admin")),
        (LAUNCH, {"id": str(uuid.uuid4())}, ("campaign", "admin")),
        (CAMPAIGNS, {}, ("municipality", "campaign", "admin")),
        (OPT_OUT, {"id": regional["id"], "m": EMMEN}, ("municipality", "admin")),
    ]
    for query, variables, allowed in operations:
        assert error_codes(gql(query, variables)) == ["UNAUTHENTICATED"], query
        for role in ROLES:
            codes = error_codes(gql(query, variables, token=as_role(role)))
            if role in allowed:
                assert "FORBIDDEN" not in codes, (query, role, codes)
            else:
                assert codes == ["FORBIDDEN"], (query, role, codes)

    # ownership: another municipality's orders, and a support point of another municipality
    other = municipality(ASSEN)
    assert error_codes(gql(ORDER, {"m": EMMEN, "q": 1}, token=other)) == ["FORBIDDEN"]
    assert error_codes(gql(ORDERS, {"m": EMMEN}, token=other)) == ["FORBIDDEN"]
    assert error_codes(gql(CANCEL, {"id": placed["id"], "reason": "x"}, token=other)) == \
        ["FORBIDDEN"]
    as_point = as_role("support_point")
    assert error_codes(gql(ORDER, {"m": ASSEN, "q": 1}, token=as_point)) == ["FORBIDDEN"]
    own = ok(gql(ORDER, {"m": EMMEN, "q": 1}, token=as_point), "orderInformationBags")
    assert own["supportPointId"] == point["id"]
    listed = ok(gql(ORDERS, {}, token=as_point), "bagOrders")
    assert {o["municipalityCode"] for o in listed} == {EMMEN} and own["id"] in \
        [o["id"] for o in listed]
    assert {o["municipalityCode"] for o in ok(gql(ORDERS, {}, token=municipality(EMMEN)),
                                              "bagOrders")} == {EMMEN}
    stranger = token("support_point", support_point=str(uuid.uuid4()))
    assert error_codes(gql(ORDER, {"m": EMMEN, "q": 1}, token=stranger)) == ["FORBIDDEN"]


@pytest.mark.parametrize("query, variables, field", [
    (ORDER, {"m": EMMEN, "q": 0}, "quantity"),
    (ORDER, {"m": EMMEN, "q": -3}, "quantity"),
    (ORDER, {"m": "GM9999", "q": 5}, "municipalityCode"),
    (ORDER, {"m": "Emmen", "q": 5}, "municipalityCode"),
    (ORDER, {"m": EMMEN, "q": 5, "p": "no-such-point"}, "supportPointId"),
    (PRINT, {"q": 0}, "quantity"),
    (CREATE, {"input": campaign_input(materials=[])}, "input.materials"),
    (CREATE, {"input": campaign_input("REGIONAL", [EMMEN, "GM9999"])},
     "input.municipalityCodes.1"),
    (CREATE, {"input": campaign_input("REGIONAL", [])}, "input.municipalityCodes"),
    (CREATE, {"input": campaign_input(endsOn="2000-01-01")}, "input.endsOn"),
    (CREATE, {"input": campaign_input(scope="LOCAL")}, "input.scope"),
])
def test_bad_input_names_the_field_and_changes_nothing(gql, ready, query, variables, field):
    before = (stock(gql), len(ok(gql(ORDERS, token=ADMIN), "bagOrders")),
              len(ok(gql(CAMPAIGNS, token=TEAM), "campaigns")))
    answer = gql(query, variables, token=ADMIN)
    assert error_codes(answer) == ["BAD_USER_INPUT"], answer
    assert answer["errors"][0]["extensions"]["field"] == field
    assert "GM9999" not in answer["errors"][0]["message"]
    assert before == (stock(gql), len(ok(gql(ORDERS, token=ADMIN), "bagOrders")),
                      len(ok(gql(CAMPAIGNS, token=TEAM), "campaigns")))


def test_an_order_a_campaign_and_a_print_run_sent_twice_with_one_identity_happen_once(
        platform, rpc, ready):
    """A call whose reply was lost is sent again by the gateway with the same request
    identity: the second call writes nothing and answers what the first did."""
    team = {"sub": "once-team", "role": "campaign", "municipality": None, "support_point": None}
    buyer = {"sub": "once-buyer", "role": "municipality", "municipality": KAMPEN,
             "support_point": None}
    orders_before = len(rpc.campaign.bag_orders(KAMPEN, team))
    campaign = campaign_input("REGIONAL", [KAMPEN, DALFSEN])
    request = uuid.uuid4().hex

    def sent(method, *args):
        """``method`` called with the request identity of its call."""
        with platform.rpc(timeout=30, context_data={REQUEST_KEY: f"{request}:{method}"}) as proxy:
            return getattr(proxy.campaign, method)(*args)

    order_data = {"municipalityCode": KAMPEN, "quantity": 3}
    first_order, second_order = (sent("order_bags", order_data, buyer) for _ in range(2))
    first_campaign, second_campaign = (sent("create_campaign", campaign, team) for _ in range(2))
    printed_before = rpc.campaign.bag_stock(team)["printed"]
    first_run, second_run = (sent("add_print_run", 7, team) for _ in range(2))
    assert second_order == first_order
    assert second_campaign == first_campaign
    assert second_run == first_run
    assert first_run["printed"] == rpc.campaign.bag_stock(team)["printed"] == printed_before + 7
    orders = rpc.campaign.bag_orders(KAMPEN, team)
    assert len(orders) == orders_before + 1
    assert [o["id"] for o in orders].count(first_order["id"]) == 1
    assert [c["name"] for c in rpc.campaign.campaigns(team)].count(campaign["name"]) == 1
