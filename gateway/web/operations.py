"""The GraphQL operations the pages run: the public contract's, executed inside the gateway
as the signed-in caregiver, with the same checks as for any other client."""


def with_reason(operation, field, selection):
    """A mutation of one thing by its id that records the reason the employee gave (a
    revocation, a deactivation, a cancellation)."""
    return (f"mutation {operation}($id: ID!, $reason: String!) {{\n"
            f"  {field}(id: $id, reason: $reason) {{ {selection} }}\n}}")


NEAREST_SUPPORT_POINTS = """
query NearestSupportPoints($postcode: String!, $area: SupportArea) {
  nearestSupportPoints(postcode: $postcode, area: $area, limit: 10) {
    id name kind areas phone email website
    address { street houseNumber postcode city }
  }
}"""

DECLARATION_FIELDS = """
  id reference status municipalityCode purposes hoursPerWeek careSince validFrom validUntil
  decisionReason verificationCode createdAt decidedAt"""

MY_DECLARATIONS = "query MyDeclarations { myDeclarations {" + DECLARATION_FIELDS + " } }"

REQUEST_DECLARATION = """
mutation RequestDeclaration($input: DeclarationRequestInput!) {
  requestDeclaration(input: $input) { id reference status decisionDueOn }
}"""

MUNICIPALITY_FOR_POSTCODE = """
query MunicipalityForPostcode($postcode: String!) {
  municipalityForPostcode(postcode: $postcode) { code name }
}"""

MUNICIPALITIES = "query Municipalities { municipalities { code name } }"

SETTINGS_FIELDS = "minCareMonths minHoursPerWeek validityMonths purposes"

DECLARATION_SETTINGS = """
query DeclarationSettings($code: String!) {
  declarationSettings(municipalityCode: $code) { """ + SETTINGS_FIELDS + """ }
}"""

RENEW_VERIFICATION_CODE = """
mutation RenewVerificationCode($id: ID!) {
  renewVerificationCode(id: $id) { id reference verificationCode }
}"""

TRIPS = "trips { date fromPostcode toPostcode distanceKm returnTrip mode amountEuros }"

# A lifecycle's audit trail as the desks show it.
HISTORY = "history { fromStatus toStatus action at actorRole reason }"

CLAIM_FIELDS = """
  id status declarationReference amountEuros ibanMasked reason submittedAt """ + TRIPS

MY_TRAVEL_CLAIMS = ("query MyTravelClaims { myTravelClaims {" + CLAIM_FIELDS
                    + " history { toStatus at } } }")

# What the fund would pay for a claim, computed by the fund without storing anything: the
# check page shows it before the caregiver confirms.
PREVIEW_TRAVEL_CLAIM = """
query PreviewTravelClaim($input: TravelClaimInput!) {
  travelClaimPreview(input: $input) { amountEuros reason """ + TRIPS + """ }
}"""

SUBMIT_TRAVEL_CLAIM = """
mutation SubmitTravelClaim($input: TravelClaimInput!) {
  submitTravelClaim(input: $input) {""" + CLAIM_FIELDS + """ }
}"""

MY_MESSAGES = "query MyMessages { myMessages { id sentAt subject body about } }"
# --- the caregiver's view of who read their data ------------------------------------------

MY_PERSONAL_DATA_ACCESS = """
query MyPersonalDataAccess { myPersonalDataAccess { at role organisation what } }"""

# --- the municipality's desk -----------------------------------------------------------------

# The queue shows no personal data: listing the applicant would record a read per request.
QUEUE = """
query Queue($code: String!, $status: DeclarationStatus, $first: Int, $after: String) {
  declarations(municipalityCode: $code, status: $status, first: $first, after: $after) {
    id reference status createdAt decisionDueOn decidedAt purposes unmetCriteria
  }
}"""

# Opening one request shows its applicant: the service records that read for the caregiver.
REQUEST_FOR_DECISION = """
query RequestForDecision($reference: String!) {
  declaration(reference: $reference) {
    id reference status municipalityCode purposes hoursPerWeek careSince validFrom validUntil
    decisionReason verificationCode createdAt decisionDueOn decidedAt unmetCriteria
    """ + HISTORY + """
    applicant { caregiverName caregiverPostcode caregiverEmail careRecipientName
                careRecipientPostcode relationship }
  }
}"""

# Only what a change needs to find the request: no personal data, no read recorded.
REQUEST_STATUS = """
query RequestStatus($reference: String!) { declaration(reference: $reference) { id status } }"""

DECIDE = """
mutation Decide($id: ID!, $decision: Decision!, $reason: String) {
  decideDeclaration(id: $id, decision: $decision, reason: $reason) { id reference status }
}"""

REVOKE = with_reason("Revoke", "revokeDeclaration", "id reference status")

SET_SETTINGS = """
mutation SetSettings($code: String!, $input: DeclarationSettingsInput!) {
  setDeclarationSettings(municipalityCode: $code, input: $input) { """ + SETTINGS_FIELDS + """ }
}"""

CAMPAIGNS = """
query Campaigns {
  campaigns {
    id name hashtag scope municipalityCodes startsOn endsOn launched
    optedOutMunicipalityCodes materials
  }
}"""

OPT_OUT = """
mutation OptOut($id: ID!, $code: String!) {
  optOutOfCampaign(id: $id, municipalityCode: $code) { id name }
}"""

POINT_FIELDS = """
  id name kind municipalityCode address { street houseNumber postcode city } phone email
  website areas active version updatedAt"""

OWN_SUPPORT_POINTS = """
query OwnSupportPoints($code: String!, $after: String) {
  supportPoints(municipalityCode: $code, first: 100, after: $after) {
    total nextCursor items {""" + POINT_FIELDS + """ }
  }
}"""

POINT_NAMES = """
query PointNames($code: String!, $after: String) {
  supportPoints(municipalityCode: $code, first: 100, after: $after) {
    nextCursor items { id name address { city } }
  }
}"""

POINT_NAME = "query PointName($id: ID!) { supportPoint(id: $id) { id name } }"

SUPPORT_POINT = "query SupportPoint($id: ID!) { supportPoint(id: $id) {" + POINT_FIELDS + " } }"

REGISTER_SUPPORT_POINT = """
mutation RegisterSupportPoint($input: SupportPointInput!) {
  registerSupportPoint(input: $input) { id name }
}"""

UPDATE_SUPPORT_POINT = """
mutation UpdateSupportPoint($id: ID!, $input: SupportPointInput!, $version: Int!) {
  updateSupportPoint(id: $id, input: $input, expectedVersion: $version) { id name version }
}"""

DEACTIVATE_SUPPORT_POINT = with_reason("DeactivateSupportPoint", "deactivateSupportPoint",
                                       "id name active")

BAG_ORDERS = """
query BagOrders($code: String!) {
  bagOrders(municipalityCode: $code) {
    id supportPointId quantityRequested quantityAllocated status localInserts createdAt
  }
}"""

ORDER_BAGS = """
mutation OrderBags($code: String!, $point: ID, $quantity: Int!, $lines: [String!]) {
  orderInformationBags(municipalityCode: $code, supportPointId: $point, quantity: $quantity,
                       localInserts: $lines) { id quantityRequested }
}"""

CANCEL_BAG_ORDER = with_reason("CancelBagOrder", "cancelBagOrder", "id status")
