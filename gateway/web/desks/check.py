"""The partners' check of a declaration (``/controleren``): by reference, verification code
and purpose, or by the signed token in the declaration's QR code, which is verified first
with the published keys and then online for its current status. The answer says valid or
not, the status, the end of validity and whether the purpose is accepted; nothing personal.
Each check is the contract's operation as the signed-in partner, so a failed one counts
toward the same limit as through the API."""
import jwt
from nameko.exceptions import RpcTimeout, UnknownService

from common.errors import Unavailable
from gateway.jwks import published_keys
from gateway.web.app import ServiceDown
from gateway.web.desks import operations
from gateway.web.forms import Form
from gateway.web.texts import PURPOSE_NAMES

PARTNER = ("partner",)
ALGORITHMS = ["EdDSA"]
FIELDS = {"referentie": ("reference", "Vul het kenmerk in zoals MZV-2026-000123."),
          "controlecode": ("verificationCode", "Vul de controlecode in."),
          "doel": ("purpose", "Kies waarvoor de verklaring wordt gebruikt.")}


def signed_by_the_platform(token, keys):
    """Whether the token carries a signature of one of the published keys (``keys``: the
    JWKS document). Its dates are left to the online check: a desk asks for today's status."""
    try:
        kid = jwt.get_unverified_header(token).get("kid")
        key = next(k for k in keys["keys"] if k.get("kid") == kid)
        jwt.decode(token, jwt.PyJWK(key).key, algorithms=ALGORITHMS,
                   options={"verify_exp": False, "verify_nbf": False, "verify_aud": False})
    except (jwt.PyJWTError, StopIteration, KeyError, TypeError, ValueError):
        return False
    return True


def check(page):
    page.require_staff(*PARTNER)
    source = page.form if page.request.method == "POST" else page.request.args
    token = (source.get("token") or "").strip()
    form = Form({name: page.form.get(name) for name in FIELDS}
                if page.request.method == "POST" else {})
    if page.request.method == "GET":
        return page.render("desk_check.html", form=form, token=token)
    purpose = form.get("doel")
    if purpose not in PURPOSE_NAMES:
        form.fail("doel", FIELDS["doel"][1])
    if not token:
        form.required("referentie", "het kenmerk")
        form.required("controlecode", "de controlecode")
    if form.errors:
        return page.render("desk_check.html", form=form, errors=form.errors, token=token,
                           status=400)
    signed = None
    if token:
        try:
            keys = published_keys(page.context())
        except (RpcTimeout, UnknownService, TimeoutError, Unavailable):
            raise ServiceDown() from None
        signed = signed_by_the_platform(token, keys)
        # Asked online also when the signature is not ours: the failure counts.
        answer = page.graphql(operations.CHECK_TOKEN, {"token": token, "purpose": purpose})[
            "checkDeclarationToken"]
    else:
        answer = page.graphql(operations.CHECK_DECLARATION, {
            "reference": form.get("referentie").upper(), "code": form.get("controlecode"),
            "purpose": purpose})["checkDeclaration"]
    # The next check starts from an empty form: the code is not left on the page.
    return page.render("desk_check.html", form=Form({}), token=token, answer=answer,
                       signed=signed, purpose=purpose)
