"""The GraphQL operations the pages run: the public contract's, executed inside the gateway
as the signed-in caregiver, with the same checks as for any other client."""

NEAREST_SUPPORT_POINTS = """
query NearestSupportPoints($postcode: String!, $area: SupportArea) {
  nearestSupportPoints(postcode: $postcode, area: $area, limit: 10) {
    id name kind areas phone email website
    address { street houseNumber postcode city }
  }
}"""

DECLARATION_FIELDS = """
  id reference status municipalityCode purposes hoursPerWeek careSince validFrom validUntil
  decisionReason verificationCode createdAt"""

MY_DECLARATIONS = "query MyDeclarations { myDeclarations {" + DECLARATION_FIELDS + " } }"

REQUEST_DECLARATION = """
mutation RequestDeclaration($input: DeclarationRequestInput!) {
  requestDeclaration(input: $input) { id reference status }
}"""

RENEW_VERIFICATION_CODE = """
mutation RenewVerificationCode($id: ID!) {
  renewVerificationCode(id: $id) { id reference verificationCode }
}"""

CLAIM_FIELDS = """
  id status declarationReference amountEuros ibanMasked reason submittedAt
  trips { date fromPostcode toPostcode distanceKm returnTrip mode amountEuros }"""

MY_TRAVEL_CLAIMS = "query MyTravelClaims { myTravelClaims {" + CLAIM_FIELDS + " } }"

# What the fund would pay for a claim, computed by the fund without storing anything: the
# check page shows it before the caregiver confirms.
PREVIEW_TRAVEL_CLAIM = """
query PreviewTravelClaim($input: TravelClaimInput!) {
  travelClaimPreview(input: $input) {
    amountEuros reason
    trips { date fromPostcode toPostcode distanceKm returnTrip mode amountEuros }
  }
}"""

SUBMIT_TRAVEL_CLAIM = """
mutation SubmitTravelClaim($input: TravelClaimInput!) {
  submitTravelClaim(input: $input) {""" + CLAIM_FIELDS + """ }
}"""

MY_MESSAGES = "query MyMessages { myMessages { id sentAt subject body about } }"
