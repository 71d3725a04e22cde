"""Declarations stored while a declaration's owner was the token subject of whoever filed
it: at start the service drops that subject, and the caregiver whose BSN the declaration
carries finds it, signing in with whatever subject."""
from datetime import datetime, timezone

from nameko.testing.services import worker_factory

from common.crypto import Keys
from services.declaration import domain
from services.declaration.service import DeclarationService
from services.declaration.storage import DECLARATIONS

BSN, OTHER_BSN = "111222333", "999990019"


def legacy(keys, number, owner, bsn):
    return {"_id": f"d{number}", "reference": f"MZV-2025-{number:06d}", "status": "ISSUED",
            "municipality_code": "GM0363", "purposes": ["PARKING_PERMIT"], "owner": owner,
            "hours_per_week": "12", "care_since": "2020-01-01", "valid_from": "2025-06-01",
            "valid_until": "2026-05-31", "token": "signed",
            "caregiver_key": domain.caregiver_key(keys, bsn), "verification_hash": "v",
            "created_at": datetime(2025, 6, number, tzinfo=timezone.utc), "history": []}


def test_old_declarations_belong_to_the_bsn_they_carry(declaration_store, tmp_path):
    keys = Keys({"DATA_DIR": str(tmp_path)}, environ={})
    declaration_store[DECLARATIONS].insert_many([
        legacy(keys, 1, "subject-at-the-time", BSN),
        legacy(keys, 2, None, BSN),                      # filed by a municipality
        legacy(keys, 3, "subject-at-the-time", OTHER_BSN)])
    declaration_store.migrate()
    declaration_store.migrate()    # every replica runs it at start: a second run is harmless

    assert declaration_store[DECLARATIONS].count_documents({"owner": {"$exists": True}}) == 0
    service = worker_factory(DeclarationService, store=declaration_store, keys=keys)
    signed_in = {"role": "caregiver", "sub": "a-new-subject", "bsn": BSN}
    mine = service.my_declarations(signed_in)
    assert [d["reference"] for d in mine] == ["MZV-2025-000002", "MZV-2025-000001"]
    # no code kept to show yet (it is shown again once renewed); the token is there
    assert [(d["verification_code"], d["token"]) for d in mine] == [(None, "signed")] * 2
    same_subject = {"role": "caregiver", "sub": "subject-at-the-time", "bsn": OTHER_BSN}
    assert [d["reference"] for d in service.my_declarations(same_subject)] == ["MZV-2025-000003"]
