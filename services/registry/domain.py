"""Registry rules, free of I/O: support point documents and reference data rows."""
import uuid

from pydantic import ValidationError

from common.errors import BadUserInput, bad_input_from_validation
from common.schemas.registry import SupportPointInput


def parse_support_point(data, field="input"):
    try:
        return SupportPointInput.model_validate(data)
    except ValidationError as exc:
        raise bad_input_from_validation(exc, field) from None


def new_support_point(point, now):
    document = point.model_dump(mode="json")
    serves = document.pop("serves_municipality_codes") or []
    document.update(
        _id=str(uuid.uuid4()),
        # The seat always serves itself; a regional point is found from each municipality.
        serves_municipality_codes=sorted({point.municipality_code, *serves}),
        active=True, version=1, created_at=now, updated_at=now,
    )
    return document


def event_payload(document):
    return {
        "id": document["_id"], "name": document["name"], "kind": document["kind"],
        "municipality_code": document["municipality_code"],
        "serves_municipality_codes": document["serves_municipality_codes"],
        "areas": document["areas"], "active": document["active"],
        "version": document["version"],
    }


def unknown_municipalities(point_document, known_codes):
    return sorted(set(point_document["serves_municipality_codes"]) - set(known_codes))


def require_known_municipalities(document, known_codes, field="input"):
    unknown = unknown_municipalities(document, known_codes)
    if unknown:
        which = ("municipalityCode" if document["municipality_code"] in unknown
                 else "servesMunicipalityCodes")
        raise BadUserInput(f"{field}.{which}: unknown municipality {unknown[0]}",
                           field=f"{field}.{which}")


def municipality_row(row):
    """A row of municipalities.csv (CBS columns) as a municipality document."""
    code = (row.get("gemeentecode") or "").strip().upper()
    name = (row.get("gemeentenaam") or "").strip()
    if not code.startswith("GM") or len(code) != 6 or not code[2:].isdigit():
        raise ValueError("gemeentecode is not a CBS code like GM0363")
    if not name:
        raise ValueError("gemeentenaam is empty")
    population = (row.get("inwoners_2023") or "").strip()
    return {
        "_id": code, "name": name, "province": (row.get("provincie") or "").strip(),
        "population": int(population) if population.isdigit() else None,
    }
