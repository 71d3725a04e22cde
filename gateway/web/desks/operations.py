"""The contract's GraphQL operations the desks run, as the signed-in employee (beside the
municipality's desk's in ``gateway/web/operations.py``)."""
from gateway.web.operations import HISTORY, POINT_FIELDS, TRIPS

CLAIM_ROW = "id status declarationReference amountEuros reason submittedAt"

# The fund's work list: claims on hold first, then those just submitted.
CLAIMS_TO_REVIEW = """
query ClaimsToReview($first: Int, $heldAfter: String, $waitingAfter: String) {
  held: travelClaims(status: ON_HOLD, first: $first, after: $heldAfter) { """ + CLAIM_ROW + """ }
  waiting: travelClaims(status: SUBMITTED, first: $first, after: $waitingAfter) {
    """ + CLAIM_ROW + """ }
}"""

CLAIM = """
query Claim($id: ID!) {
  travelClaim(id: $id) {
    """ + CLAIM_ROW + " ibanMasked " + TRIPS + " " + HISTORY + """
  }
}"""

REVIEW_CLAIM = """
mutation ReviewClaim($id: ID!, $approve: Boolean!, $reason: String) {
  reviewTravelClaim(id: $id, approve: $approve, reason: $reason) { id status }
}"""

APPROVED_CLAIMS = """
query ApprovedClaims($first: Int, $after: String) {
  travelClaims(status: APPROVED, first: $first, after: $after) { id amountEuros }
}"""

BATCH_FIELDS = "id claimCount totalEuros createdAt status releasedAt proposedByYou"

PAYOUT_BATCHES = """
query PayoutBatches($first: Int) { payoutBatches(first: $first) { """ + BATCH_FIELDS + """ } }"""

PROPOSE_BATCH = "mutation ProposeBatch { createPayoutBatch { " + BATCH_FIELDS + " } }"

RELEASE_BATCH = """
mutation ReleaseBatch($id: ID!) { releasePayoutBatch(id: $id) { """ + BATCH_FIELDS + """ } }"""

# --- information bags and campaigns --------------------------------------------------------

ORDER_FIELDS = """id municipalityCode supportPointId quantityRequested quantityAllocated status
    localInserts createdAt"""

BAG_STOCK = "query BagStock { bagStock { printed allocated shipped available } }"

# The campaign team: every order, or one municipality's.
BAG_ORDERS = """
query BagOrders($code: String) { bagOrders(municipalityCode: $code) { """ + ORDER_FIELDS + """ } }"""

ADD_PRINT_RUN = """
mutation AddPrintRun($quantity: Int!) { addPrintRun(quantity: $quantity) { printed available } }"""

RUN_ALLOCATION = """
mutation RunAllocation {
  runBagAllocation {
    id availableBefore allocated createdAt
    allocations { allocatedNow explanation explanationInDutch order { """ + ORDER_FIELDS + """ } }
  }
}"""

MARK_SHIPPED = "mutation Ship($id: ID!) { markBagOrderShipped(id: $id) { id status } }"
MARK_DELIVERED = "mutation Deliver($id: ID!) { markBagOrderDelivered(id: $id) { id status } }"

CAMPAIGN_FIELDS = """id name hashtag scope municipalityCodes startsOn endsOn launched
    reachedSupportPoints optedOutMunicipalityCodes materials"""

# The campaign team's view: with the reach of each.
CAMPAIGNS = "query Campaigns { campaigns { " + CAMPAIGN_FIELDS + " } }"

CREATE_CAMPAIGN = """
mutation CreateCampaign($input: CampaignInput!) { createCampaign(input: $input) { id name } }"""

LAUNCH_CAMPAIGN = """
mutation LaunchCampaign($id: ID!) { launchCampaign(id: $id) { id name reachedSupportPoints } }"""

# --- a support point's own entry ----------------------------------------------------------

# Its entry, with the municipalities it serves (kept as they are on a change).
SUPPORT_POINT = ("query SupportPoint($id: ID!) { supportPoint(id: $id) {" + POINT_FIELDS
                 + " servesMunicipalityCodes } }")

SUPPORT_POINT_MATERIALS = """
query Materials { supportPointMaterials { campaignName hashtag materials startsOn endsOn at } }"""

# --- a partner's check ---------------------------------------------------------------------

CHECK_FIELDS = "valid status validUntil purposeAccepted"

CHECK_DECLARATION = """
query Check($reference: String!, $code: String!, $purpose: DeclarationPurpose!) {
  checkDeclaration(reference: $reference, verificationCode: $code, purpose: $purpose) {
    """ + CHECK_FIELDS + """ }
}"""

CHECK_TOKEN = """
query CheckToken($token: String!, $purpose: DeclarationPurpose!) {
  checkDeclarationToken(token: $token, purpose: $purpose) { """ + CHECK_FIELDS + """ }
}"""
