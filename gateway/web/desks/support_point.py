"""A support point's own desk: its entry as the public sees it, edited with the version
check (when someone else changed it first, the page says so and overwrites nothing), and
the campaign material distributed to it."""
from gateway.web.app import STAFF_PAGES, OperationRefused
from gateway.web.desks import operations
from gateway.web.forms import Form
from gateway.web.texts import AREA_NAMES
from gateway.web.views import not_found

POINT = ("support_point",)
HOME = STAFF_PAGES + "/steunpunt"

# form field -> (contract input path, message when refused, label for the changes list)
FIELDS = {
    "naam": ("input.name", "Vul de naam van het steunpunt in.", "Naam"),
    "straat": ("input.address.street", "Vul de straat in.", "Straat"),
    "huisnummer": ("input.address.houseNumber", "Vul het huisnummer in.", "Huisnummer"),
    "postcode": ("input.address.postcode", "Vul de postcode in zoals 1234 AB.", "Postcode"),
    "plaats": ("input.address.city", "Vul de plaats in.", "Plaats"),
    "telefoon": ("input.phone", "Vul een telefoonnummer in zoals 030 123 45 67, of laat het "
                                "leeg.", "Telefoon"),
    "email": ("input.email", "Vul een e-mailadres in zoals info@steunpunt.nl, of laat het "
                             "leeg.", "E-mailadres"),
    "website": ("input.website", "Vul een websiteadres in zoals https://steunpunt.nl, of "
                                 "laat het leeg.", "Website"),
    "hulp": ("input.areas", "Kies minstens één soort hulp.", "Soorten hulp"),
}
CONFLICT = ("Iemand anders heeft de gegevens van uw steunpunt gewijzigd nadat u deze pagina "
            "opende. Uw wijzigingen zijn niet opgeslagen en die van de ander zijn niet "
            "overschreven. Hieronder staan de gegevens zoals ze nu zijn, en wat u had "
            "ingevuld. Neem uw wijzigingen opnieuw over als ze nog nodig zijn.")


def _form_of(point):
    address = point["address"]
    return Form({"naam": point["name"], "straat": address["street"],
                 "huisnummer": address["houseNumber"], "postcode": address["postcode"],
                 "plaats": address["city"], "telefoon": point["phone"],
                 "email": point["email"], "website": point["website"],
                 "versie": str(point["version"])})


def _show(page, point, form=None, areas=None, changes=None, status=200):
    form = form or _form_of(point)
    materials = page.graphql(operations.SUPPORT_POINT_MATERIALS)["supportPointMaterials"]
    return page.render("desk_support_point.html", point=point, form=form, errors=form.errors,
                       chosen=areas if areas is not None else point["areas"], changes=changes,
                       materials=materials, status=status)


def _point(page):
    return page.graphql(operations.SUPPORT_POINT,
                        {"id": page.session["support_point"]})["supportPoint"]


def support_point(page):
    page.require_staff(*POINT)
    point = _point(page)
    if point is None:
        return not_found(page)
    if page.request.method == "GET":
        return _show(page, point)
    form = Form({name: page.form.get(name) for name in (*FIELDS, "versie")})
    areas = [a for a in page.form.getlist("hulp") if a in AREA_NAMES]
    for name in ("naam", "straat", "huisnummer", "plaats"):
        form.required(name, FIELDS[name][2].lower())
    postcode = form.postcode("postcode", "de postcode")
    if not areas:
        form.fail("hulp", FIELDS["hulp"][1])
    version = form.get("versie")
    if form.errors or not version.isdigit():
        return _show(page, point, form, areas, status=400)
    entry = {"name": form.get("naam"), "kind": point["kind"],
             "municipalityCode": point["municipalityCode"],
             "servesMunicipalityCodes": point["servesMunicipalityCodes"],
             "address": {"street": form.get("straat"), "houseNumber": form.get("huisnummer"),
                         "postcode": postcode, "city": form.get("plaats")},
             "phone": form.get("telefoon") or None, "email": form.get("email") or None,
             "website": form.get("website") or None, "areas": areas}
    try:
        page.graphql(operations.UPDATE_SUPPORT_POINT,
                     {"id": point["id"], "input": entry, "version": int(version)})
    except OperationRefused as refusal:
        if "CONFLICT" in refusal.codes:
            return _conflict(page, form, areas)
        form.refused(refusal, {k: v[:2] for k, v in FIELDS.items()},
                     "Opslaan lukte niet. Controleer wat u hebt ingevuld.")
        return _show(page, point, form, areas, status=400)
    page.session.flash("De gegevens van uw steunpunt zijn opgeslagen. Iedereen ziet ze nu zo.")
    return page.redirect(HOME)


def _conflict(page, typed, areas):
    """Someone else saved first: the entry as it is now, and what this employee typed that
    differs from it, for them to take over again."""
    current = _point(page)
    fresh = _form_of(current)
    changes = [(FIELDS[name][2], typed.get(name)) for name in FIELDS
               if name != "hulp" and typed.get(name) != fresh.get(name)]
    if sorted(areas) != sorted(current["areas"]):
        changes.append((FIELDS["hulp"][2], ", ".join(AREA_NAMES[a] for a in areas)))
    fresh.fail("", CONFLICT)
    return _show(page, current, fresh, changes=changes, status=409)
