"""The contract's authorisation table (contract/README.md, "Who may do what"), every
operation for every role, through the gateway on the real services. "own" and "other" are
two municipalities: staff of the first, staff of the second, and a support point seated in
each. The operations the gateway adds (documented in the README) are in the table too.

Operations whose issue is not built yet stay in the table: PENDING names them, a test checks
that each is really absent from the gateway's schema, and their rows run as soon as they
land."""
import itertools
import uuid
from datetime import date, timedelta

import pytest

from gateway.schema import schema
from tests.support import (ACCOUNT_HOLDER, CAREGIVER_NAME, personal_email, random_bsn,
                           random_iban, recipient_name, token)

OWN, OTHER = "GM0200", "GM0202"   # Apeldoorn, Arnhem
ROLES = ("anonymous", "caregiver", "municipality_own", "municipality_other", "partner",
         "support_point_own", "support_point_other", "fund", "campaign", "admin")
A, F, U, N = "A", "F", "U", "N"   # allowed, FORBIDDEN, UNAUTHENTICATED, NOT_FOUND
CODES = {F: "FORBIDDEN", U: "UNAUTHENTICATED", N: "NOT_FOUND"}

TABLE = """
operation               anon care m-own m-oth partner sp-own sp-oth fund campaign admin
supportPoints             A    A    A     A     A       A      A      A    A        A
supportPoint              A    A    A     A     A       A      A      A    A        A
nearestSupportPoints      A    A    A     A     A       A      A      A    A        A
supportPointHistory       U    F    A     F     F       A      F      F    F        A
registerSupportPoint      U    F    A     F     F       F      F      F    F        A
updateSupportPoint        U    F    A     F     F       A      F      F    F        A
deactivateSupportPoint    U    F    A     F     F       A      F      F    F        A
requestDeclaration        U    A    A     F     F       F      F      F    F        F
declaration               U    A    A     N     N       N      N      N    N        A
myDeclarations            U    A    F     F     F       F      F      F    F        F
renewVerificationCode     U    A    A     F     F       F      F      F    F        F
declarations              U    F    A     F     F       F      F      F    F        A
decideDeclaration         U    F    A     F     F       F      F      F    F        A
revokeDeclaration         U    F    A     F     F       F      F      F    F        A
checkDeclaration          U    F    A     A     A       F      F      F    F        A
checkDeclarationToken     U    F    A     A     A       F      F      F    F        A
declarationSettings       A    A    A     A     A       A      A      A    A        A
setDeclarationSettings    U    F    A     F     F       F      F      F    F        A
health                    A    A    A     A     A       A      A      A    A        A
submitTravelClaim         U    A    F     F     F       F      F      F    F        F
travelClaimPreview        U    A    F     F     F       F      F      F    F        F
myTravelClaims            U    A    F     F     F       F      F      F    F        F
travelStatement           U    A    F     F     F       F      F      F    F        F
travelClaim               U    A    F     F     F       F      F      A    F        A
travelClaims              U    F    F     F     F       F      F      A    F        A
reviewTravelClaim         U    F    F     F     F       F      F      A    F        A
createPayoutBatch         U    F    F     F     F       F      F      A    F        A
orderInformationBags      U    F    A     F     F       A      F      F    A        A
bagOrders                 U    F    A     F     F       A      F      F    A        A
cancelBagOrder            U    F    A     F     F       A      F      F    A        A
addPrintRun               U    F    F     F     F       F      F      F    A        A
markBagOrderShipped       U    F    F     F     F       F      F      F    A        A
markBagOrderDelivered     U    F    F     F     F       F      F      F    A        A
runBagAllocation          U    F    F     F     F       F      F      F    A        A
bagStock                  U    F    F     F     F       F      F      F    A        A
createCampaign            U    F    F     F     F       F      F      F    A        A
launchCampaign            U    F    F     F     F       F      F      F    A        A
campaigns                 U    F    A     A     F       F      F      F    A        A
supportPointMaterials     U    F    F     F     F       A      A      F    F        F
optOutOfCampaign          U    F    A     F     F       F      F      F    F        A
municipalities            A    A    A     A     A       A      A      A    A        A
municipalityForPostcode   A    A    A     A     A       A      A      A    A        A
myPersonalDataAccess      U    A    F     F     F       F      F      F    F        F
myMessages                U    A    F     F     F       F      F      F    F        F
payoutBatches             U    F    F     F     F       F      F      A    F        A
releasePayoutBatch        U    F    F     F     F       F      F      A    F        A
"""
EXPECTED = {line.split()[0]: dict(zip(ROLES, line.split()[1:]))
            for line in TABLE.strip().splitlines()[1:]}

# Contract additions not built yet, each with its issue; a row runs as soon as it lands.
PENDING = {}
# Issue 10 also makes `declaration` answer NOT_FOUND (not FORBIDDEN) to whoever may not see
# it; until it lands (with myDeclarations), either refusal passes.
NOT_FOUND_LANDS_WITH = "myDeclarations"

TODAY = date.today()
TRIP_NUMBERS = itertools.count(1)
POSTCODE_LETTERS = "ABCDEFGHJK"
DECLARATION = "id reference status"
POINT = "id version"
BAG_ORDER = "id status"
CLAIM = "id status"
CAMPAIGN = "id launched"


def _present(name):
    graphql = schema.graphql_schema
    return name in graphql.query_type.fields or name in graphql.mutation_type.fields


class World:
    """The data the operations act on, made through the public paths as admin, the own
    municipality and the caregiver; ``fresh_*`` make a new one for an operation that uses
    up what it acts on (deactivating, deciding, revoking, cancelling)."""

    def __init__(self, gql):
        self.gql = gql
        self.bsn = random_bsn()
        self.own_point_of_call = None
        self.caregiver = token("caregiver", sub=f"table-{uuid.uuid4().hex[:8]}", bsn=self.bsn)
        self.point_own = self.fresh_point(OWN)["id"]
        self.point_other = self.fresh_point(OTHER)["id"]
        own = self.call(REQUEST_DECLARATION, {"input": self.declaration_input(self.bsn)},
                        self.caregiver)["requestDeclaration"]
        self.declaration = own
        issued = self.fresh_issued_declaration()
        self.issued_reference, self.issued_token = issued["reference"], issued["token"]

    def call(self, query, variables, bearer):
        answer = self.gql(query, variables, token=bearer)
        assert "errors" not in answer, answer["errors"]
        return answer["data"]

    @staticmethod
    def point_input(seat):
        return {"name": f"Steunpunt {uuid.uuid4().hex[:8]}", "kind": "LOCAL",
                "municipalityCode": seat,
                "address": {"street": "Markt", "houseNumber": "1", "postcode": "7311 AA",
                            "city": "Apeldoorn"},
                "areas": ["INFORMATION"]}

    def fresh_point(self, seat=OWN):
        return self.call(REGISTER, {"input": self.point_input(seat)}, token("admin"))[
            "registerSupportPoint"]

    def acting_point(self, point_id):
        """The point a support_point_own token stands for in this call (itself)."""
        self.own_point_of_call = point_id
        return point_id

    def current_version(self, point_id):
        return self.call("query($id: ID!) { supportPoint(id: $id) { version } }",
                         {"id": point_id}, None)["supportPoint"]["version"]

    @staticmethod
    def declaration_input(bsn, purposes=("PARKING_PERMIT", "TRAVEL_COST_FUND")):
        return {"municipalityCode": OWN,
                "caregiver": {"bsn": bsn, "name": CAREGIVER_NAME, "postcode": "7311 AA",
                              "email": personal_email()},
                "careRecipient": {"name": recipient_name(), "postcode": "7311 AB",
                                  "relationship": "parent"},
                "hoursPerWeek": "12.5", "careSince": (TODAY - timedelta(days=400)).isoformat(),
                "purposes": list(purposes)}

    def fresh_declaration(self, bearer=None, bsn=None):
        bearer = bearer or token("municipality", municipality=OWN)
        return self.call(REQUEST_DECLARATION, {"input": self.declaration_input(
            bsn or random_bsn())}, bearer)["requestDeclaration"]

    def fresh_issued_declaration(self, bearer=None, bsn=None):
        requested = self.fresh_declaration(bearer, bsn)
        return self.call("mutation($id: ID!) { decideDeclaration(id: $id, decision: ISSUE) "
                         "{ id reference token } }", {"id": requested["id"]}, token("admin"))[
            "decideDeclaration"]

    # --- for the operations still pending (issues 11 and 12) ---------------------------

    def caregivers_issued_reference(self):
        return self.fresh_issued_declaration(self.caregiver, self.bsn)["reference"]

    def claim_input(self):
        # the declaration is valid from today; every claim a trip of its own (the same trip
        # twice is a CONFLICT)
        number = next(TRIP_NUMBERS)
        destination = "7311 " + POSTCODE_LETTERS[number // 10 % 10] + POSTCODE_LETTERS[number % 10]
        return {"declarationReference": self.caregivers_issued_reference(),
                "iban": random_iban(), "accountHolder": ACCOUNT_HOLDER,
                "trips": [{"date": TODAY.isoformat(),
                           "fromPostcode": "7311 AA", "toPostcode": destination,
                           "distanceKm": "12.5", "returnTrip": True, "mode": "CAR"}]}

    def fresh_claim(self):
        return self.call("mutation($input: TravelClaimInput!) { submitTravelClaim(input: $input) "
                         f"{{ {CLAIM} }} }}", {"input": self.claim_input()}, self.caregiver)[
            "submitTravelClaim"]

    def approved_claim(self):
        """A claim approved by fund staff: a payout batch has something to pay."""
        claim = self.fresh_claim()
        self.call("mutation($id: ID!) { reviewTravelClaim(id: $id, approve: true, "
                  'reason: "route checked") { id } }', {"id": claim["id"]}, token("fund"))
        return claim

    def proposed_batch(self):
        """A payout batch proposed by another fund member than the one who releases it."""
        self.approved_claim()
        return self.call("mutation { createPayoutBatch { id } }", None,
                         token("fund", sub="table-fund-proposer"))["createPayoutBatch"]

    def fresh_bag_order(self, status="REQUESTED"):
        admin = token("admin")
        self.call("mutation { addPrintRun(quantity: 100) { available } }", None, admin)
        order = self.call("mutation($m: String!) { orderInformationBags(municipalityCode: $m, "
                          f"quantity: 5) {{ {BAG_ORDER} }} }}", {"m": OWN}, admin)[
            "orderInformationBags"]
        if status in ("ALLOCATED", "SHIPPED"):
            self.call("mutation { runBagAllocation { allocated } }", None, admin)
        if status == "SHIPPED":
            self.call("mutation($id: ID!) { markBagOrderShipped(id: $id) { id } }",
                      {"id": order["id"]}, admin)
        return order

    def campaign_input(self, scope="NATIONAL"):
        return {"name": f"Campagne {uuid.uuid4().hex[:6]}", "hashtag": "#deeljezorg",
                "scope": scope, "municipalityCodes": [OWN, OTHER] if scope == "REGIONAL" else None,
                "startsOn": (TODAY + timedelta(days=30)).isoformat(),
                "endsOn": (TODAY + timedelta(days=60)).isoformat(), "materials": ["poster"]}

    def fresh_campaign(self, scope="NATIONAL"):
        return self.call("mutation($input: CampaignInput!) { createCampaign(input: $input) "
                         f"{{ {CAMPAIGN} }} }}", {"input": self.campaign_input(scope)},
                         token("admin"))["createCampaign"]


REGISTER = f"""mutation($input: SupportPointInput!) {{
    registerSupportPoint(input: $input) {{ {POINT} }} }}"""
REQUEST_DECLARATION = f"""mutation($input: DeclarationRequestInput!) {{
    requestDeclaration(input: $input) {{ {DECLARATION} }} }}"""

# operation -> (query, variables for the caller's role, made from the world just before the
# call; a maker that acts on a new support point names it with ``acting_point``, so that the
# support_point_own token stands for that point).
OPERATIONS = {
    "supportPoints": ("query($m: String) { supportPoints(municipalityCode: $m) { total } }",
                      lambda w, role: {"m": OWN}),
    "supportPoint": ("query($id: ID!) { supportPoint(id: $id) { id } }",
                     lambda w, role: {"id": w.point_own}),
    "nearestSupportPoints": ('query { nearestSupportPoints(postcode: "7311 AA") { id } }',
                             lambda w, role: {}),
    "supportPointHistory": ("query($id: ID!) { supportPointHistory(id: $id) { version } }",
                            lambda w, role: {"id": w.point_own}),
    "registerSupportPoint": (REGISTER, lambda w, role: {"input": w.point_input(OWN)}),
    "updateSupportPoint": (
        f"""mutation($id: ID!, $input: SupportPointInput!, $v: Int!) {{
            updateSupportPoint(id: $id, input: $input, expectedVersion: $v) {{ {POINT} }} }}""",
        lambda w, role: {"id": w.point_own, "input": w.point_input(OWN),
                         "v": w.current_version(w.point_own)}),
    "deactivateSupportPoint": (
        f"""mutation($id: ID!) {{ deactivateSupportPoint(id: $id, reason: "closed") {{ {POINT} }} }}""",
        lambda w, role: {"id": w.acting_point(w.fresh_point(OWN)["id"])}),
    "requestDeclaration": (
        REQUEST_DECLARATION,
        # a caregiver files for its own BSN; staff file on behalf of someone
        lambda w, role: {"input": w.declaration_input(w.bsn if role == "caregiver"
                                                      else random_bsn())}),
    "declaration": (f"query($r: String!) {{ declaration(reference: $r) {{ {DECLARATION} }} }}",
                    lambda w, role: {"r": w.declaration["reference"]}),
    "myDeclarations": (f"query {{ myDeclarations {{ {DECLARATION} }} }}", lambda w, role: {}),
    "renewVerificationCode": (
        "mutation($id: ID!) { renewVerificationCode(id: $id) { id } }",
        lambda w, role: {"id": w.declaration["id"]}),
    "declarations": ("query($m: String!) { declarations(municipalityCode: $m) { id } }",
                     lambda w, role: {"m": OWN}),
    "decideDeclaration": (
        f"mutation($id: ID!) {{ decideDeclaration(id: $id, decision: ISSUE) {{ {DECLARATION} }} }}",
        lambda w, role: {"id": w.fresh_declaration()["id"]}),
    "revokeDeclaration": (
        f"""mutation($id: ID!) {{ revokeDeclaration(id: $id, reason: "moved away") {{
            {DECLARATION} }} }}""",
        lambda w, role: {"id": w.fresh_issued_declaration()["id"]}),
    "checkDeclaration": (
        """query($r: String!) { checkDeclaration(reference: $r, verificationCode: "0000-0000",
            purpose: PARKING_PERMIT) { valid } }""",
        lambda w, role: {"r": w.issued_reference}),
    "checkDeclarationToken": (
        "query($t: String!) { checkDeclarationToken(token: $t, purpose: PARKING_PERMIT) { valid } }",
        lambda w, role: {"t": w.issued_token}),
    "declarationSettings": (
        "query($m: String!) { declarationSettings(municipalityCode: $m) { validityMonths } }",
        lambda w, role: {"m": OWN}),
    "setDeclarationSettings": (
        """mutation($m: String!) { setDeclarationSettings(municipalityCode: $m, input: {}) {
            validityMonths } }""",
        lambda w, role: {"m": OWN}),
    "health": ("{ health { status } }", lambda w, role: {}),
    "submitTravelClaim": (
        f"mutation($input: TravelClaimInput!) {{ submitTravelClaim(input: $input) {{ {CLAIM} }} }}",
        lambda w, role: {"input": w.claim_input()}),
    "travelClaimPreview": (
        "query($input: TravelClaimInput!) { travelClaimPreview(input: $input) { amountEuros } }",
        lambda w, role: {"input": w.claim_input()}),
    "myTravelClaims": (f"query {{ myTravelClaims {{ {CLAIM} }} }}", lambda w, role: {}),
    "travelStatement": ("query($y: Int!) { travelStatement(year: $y) { year } }",
                        lambda w, role: {"y": TODAY.year}),
    "travelClaim": (f"query($id: ID!) {{ travelClaim(id: $id) {{ {CLAIM} }} }}",
                    lambda w, role: {"id": w.fresh_claim()["id"]}),
    "travelClaims": (f"query {{ travelClaims {{ {CLAIM} }} }}", lambda w, role: {}),
    "reviewTravelClaim": (
        f"mutation($id: ID!) {{ reviewTravelClaim(id: $id, approve: true, reason: \"route checked\") {{ {CLAIM} }} }}",
        lambda w, role: {"id": w.fresh_claim()["id"]}),
    "createPayoutBatch": ("mutation { createPayoutBatch { id } }",
                          lambda w, role: w.approved_claim() and {}),
    "orderInformationBags": (
        f"""mutation($m: String!, $sp: ID) {{ orderInformationBags(municipalityCode: $m,
            supportPointId: $sp, quantity: 5) {{ {BAG_ORDER} }} }}""",
        lambda w, role: {"m": OWN, "sp": w.point_own if role.startswith("support_point")
                         else None}),
    "bagOrders": (f"query($m: String) {{ bagOrders(municipalityCode: $m) {{ {BAG_ORDER} }} }}",
                  lambda w, role: {"m": OWN}),
    "cancelBagOrder": (
        f'mutation($id: ID!) {{ cancelBagOrder(id: $id, reason: "too many") {{ {BAG_ORDER} }} }}',
        lambda w, role: {"id": w.fresh_bag_order()["id"]}),
    "addPrintRun": ("mutation { addPrintRun(quantity: 10) { available } }", lambda w, role: {}),
    "markBagOrderShipped": (
        f"mutation($id: ID!) {{ markBagOrderShipped(id: $id) {{ {BAG_ORDER} }} }}",
        lambda w, role: {"id": w.fresh_bag_order("ALLOCATED")["id"]}),
    "markBagOrderDelivered": (
        f"mutation($id: ID!) {{ markBagOrderDelivered(id: $id) {{ {BAG_ORDER} }} }}",
        lambda w, role: {"id": w.fresh_bag_order("SHIPPED")["id"]}),
    "runBagAllocation": ("mutation { runBagAllocation { allocated } }", lambda w, role: {}),
    "bagStock": ("query { bagStock { available } }", lambda w, role: {}),
    "createCampaign": (
        f"mutation($input: CampaignInput!) {{ createCampaign(input: $input) {{ {CAMPAIGN} }} }}",
        lambda w, role: {"input": w.campaign_input()}),
    "launchCampaign": (f"mutation($id: ID!) {{ launchCampaign(id: $id) {{ {CAMPAIGN} }} }}",
                       lambda w, role: {"id": w.fresh_campaign()["id"]}),
    "campaigns": (f"query {{ campaigns {{ {CAMPAIGN} }} }}", lambda w, role: {}),
    "supportPointMaterials": ("query { supportPointMaterials { campaignName at } }",
                              lambda w, role: {}),
    "optOutOfCampaign": (
        f"""mutation($id: ID!, $m: String!) {{ optOutOfCampaign(id: $id, municipalityCode: $m) {{
            {CAMPAIGN} }} }}""",
        lambda w, role: {"id": w.fresh_campaign("REGIONAL")["id"], "m": OWN}),
    "municipalities": ("query { municipalities { code name } }", lambda w, role: {}),
    "municipalityForPostcode": ('query { municipalityForPostcode(postcode: "7311 AA") { code } }',
                                lambda w, role: {}),
    "myPersonalDataAccess": ("query { myPersonalDataAccess { at what } }", lambda w, role: {}),
    "myMessages": ("query { myMessages { id subject } }", lambda w, role: {}),
    "payoutBatches": ("query { payoutBatches { id status } }", lambda w, role: {}),
    "releasePayoutBatch": ("mutation($id: ID!) { releasePayoutBatch(id: $id) { id status } }",
                           lambda w, role: {"id": w.proposed_batch()["id"]}),
}


def bearer(world, role):
    return {
        "anonymous": None,
        "caregiver": world.caregiver,
        "municipality_own": token("municipality", municipality=OWN),
        "municipality_other": token("municipality", municipality=OTHER),
        "partner": token("partner", sub="table-partner"),
        "support_point_own": token("support_point",
                                   support_point=world.own_point_of_call or world.point_own),
        "support_point_other": token("support_point", support_point=world.point_other),
        "fund": token("fund"), "campaign": token("campaign"), "admin": token("admin"),
    }[role]


@pytest.fixture(scope="module")
def world(gql, pc4_areas):
    # nearestSupportPoints and travel claims need the PC4 areas
    return World(gql)


def test_the_table_covers_every_operation_of_the_contract_and_of_the_gateway():
    from graphql import build_schema

    from tests.unit.test_contract import CONTRACT

    contract = build_schema(CONTRACT.read_text())
    named = {*contract.query_type.fields, *contract.mutation_type.fields,
             *schema.graphql_schema.query_type.fields, *schema.graphql_schema.mutation_type.fields}
    assert set(EXPECTED) == named == set(OPERATIONS)


def test_pending_operations_are_really_not_built_yet():
    for name in PENDING:
        assert not _present(name), f"{name} has landed: remove it from PENDING"


@pytest.mark.parametrize("operation, role", [(o, r) for o in EXPECTED for r in ROLES])
def test_who_may_do_what(gql, world, operation, role):
    if operation in PENDING:
        pytest.skip(f"{operation} is not built yet")
    query, make_variables = OPERATIONS[operation]
    expected = EXPECTED[operation][role]
    world.own_point_of_call = None
    variables = make_variables(world, role)
    answer = gql(query, variables, token=bearer(world, role))
    codes = [error["extensions"]["code"] for error in answer.get("errors", [])]
    if expected == A:
        assert codes == [], f"{operation} as {role}: {answer['errors']}"
        assert answer["data"][operation] is not None
        return
    wanted = {CODES[expected]}
    if operation == "declaration" and expected == N and not _present(NOT_FOUND_LANDS_WITH):
        wanted.add("FORBIDDEN")
    assert len(codes) == 1 and codes[0] in wanted, f"{operation} as {role}: {answer}"
    assert not (answer.get("data") or {}).get(operation)


# Declaration.applicant, per role: the owner caregiver and the municipality it was requested
# at see it; admin reads the declaration without it; for anyone else the declaration itself is
# NOT_FOUND (its row above).
APPLICANT_SEEN = {"caregiver": True, "municipality_own": True, "admin": False}


@pytest.mark.parametrize("role", ROLES)
def test_who_sees_the_applicant(gql, world, role):
    world.own_point_of_call = None
    answer = gql("""query($r: String!) { declaration(reference: $r) {
                      reference applicant { caregiverName relationship } } }""",
                 {"r": world.declaration["reference"]}, token=bearer(world, role))
    if role not in APPLICANT_SEEN:
        codes = [error["extensions"]["code"] for error in answer.get("errors", [])]
        assert codes == [CODES[EXPECTED["declaration"][role]]], answer
        return
    assert "errors" not in answer, answer
    applicant = answer["data"]["declaration"]["applicant"]
    if APPLICANT_SEEN[role]:
        assert applicant == {"caregiverName": "Anna de Vries", "relationship": "parent"}
    else:
        assert applicant is None
