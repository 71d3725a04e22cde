"""Event and RPC payloads of the declaration service."""
from datetime import date

from common.schemas import Payload


class DeclarationStatusChanged(Payload):
    """declaration.requested / .issued / .rejected / .revoked / .expired.

    No personal data: no BSN, no names, no care relationship. ``owner`` is the caregiver's
    pseudonymous subject id from the identity provider, needed by the travel-cost fund to
    check that a claim's declaration belongs to the claimant."""
    id: str
    reference: str
    status: str
    municipality_code: str
    purposes: list[str]
    owner: str | None = None
    valid_from: date | None = None
    valid_until: date | None = None
