"""The signed token of an issued declaration: what it claims, signing it, and telling a
genuine one from anything else. A desk verifies it offline with the published keys (the
JWKS); the service checks it online against the declaration's current status."""
import calendar
from datetime import date, timedelta

import jwt

ISSUER = "mantelzorg-declaration"
ALGORITHM = "EdDSA"


def claims(declaration):
    """Reference, purposes, validity, municipality; nothing else, nothing personal."""
    valid_until = date.fromisoformat(declaration["valid_until"])
    end = calendar.timegm((valid_until + timedelta(days=1)).timetuple())
    start = calendar.timegm(date.fromisoformat(declaration["valid_from"]).timetuple())
    return {"iss": ISSUER, "reference": declaration["reference"],
            "purposes": declaration["purposes"], "municipality": declaration["municipality_code"],
            "valid_from": declaration["valid_from"], "valid_until": declaration["valid_until"],
            "nbf": start, "exp": end}


def sign(declaration, signer):
    """The token of an issued declaration, signed with the current key (its id in ``kid``)."""
    return jwt.encode(claims(declaration), signer.private_key, algorithm=ALGORITHM,
                      headers={"kid": signer.key_id})


def signed_reference(token, signer):
    """The reference a token signed by one of our published keys names, or None when it is
    not such a token. Its validity dates are left to the declaration's current status."""
    try:
        key = signer.public_keys[jwt.get_unverified_header(token).get("kid")]
        found = jwt.decode(token, key, algorithms=[ALGORITHM], issuer=ISSUER,
                           options={"require": ["exp", "iss"], "verify_exp": False,
                                    "verify_nbf": False})
    except (jwt.PyJWTError, KeyError, TypeError):
        return None
    return found.get("reference")
