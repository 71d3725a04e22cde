"""A support point's own desk: its entry as the public sees it, edited with the version
check (when someone else changed it first, the page says so and overwrites nothing), and
the campaign material distributed to it. The form and its checks are the municipality's
(``staff._point_values``, ``staff._point_input``); the seat and the municipalities served
stay as they are."""
from gateway.web import operations as desk_operations
from gateway.web import staff
from gateway.web.app import STAFF_PAGES, OperationRefused
from gateway.web.desks import operations
from gateway.web.forms import Form
from gateway.web.texts import AREA_NAMES, KIND_NAMES
from gateway.web.views import not_found

POINT = ("support_point",)
HOME = STAFF_PAGES + "/steunpunt"
LABELS = {"naam": "Naam", "soort": "Soort steunpunt", "straat": "Straat",
          "huisnummer": "Huisnummer", "postcode": "Postcode", "plaats": "Plaats",
          "telefoon": "Telefoon", "email": "E-mail", "website": "Website"}
CONFLICT = ("Iemand anders heeft de gegevens van uw steunpunt gewijzigd nadat u deze pagina "
            "opende. Uw wijzigingen zijn niet opgeslagen en die van de ander zijn niet "
            "overschreven. Hieronder staan de gegevens zoals ze nu zijn, en wat u had "
            "ingevuld. Neem uw wijzigingen opnieuw over als ze nog nodig zijn.")


def _form_of(point):
    return Form({**staff._point_values(point), "versie": str(point["version"])})


def _show(page, point, form=None, areas=None, changes=None, status=200):
    form = form or _form_of(point)
    materials = page.graphql(operations.SUPPORT_POINT_MATERIALS)["supportPointMaterials"]
    return page.render("desk_support_point.html", point=point, form=form, errors=form.errors,
                       areas=areas if areas is not None else point["areas"], changes=changes,
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
    form = Form({name: page.form.get(name) for name in (*LABELS, "versie")})
    areas = page.form.getlist("hulp")
    entry = staff._point_input(page, form, areas)
    version = form.get("versie")
    if entry is None or not version.isdigit():
        return _show(page, point, form, areas, status=400)
    entry.update(municipalityCode=point["municipalityCode"],
                 servesMunicipalityCodes=point["servesMunicipalityCodes"])
    try:
        page.graphql(desk_operations.UPDATE_SUPPORT_POINT,
                     {"id": point["id"], "input": entry, "version": int(version)})
    except OperationRefused as refusal:
        if "CONFLICT" in refusal.codes:
            return _conflict(page, form, areas)
        form.refused(refusal, staff.POINT_FORM_FIELDS,
                     "Opslaan lukte niet. Controleer wat u hebt ingevuld.")
        return _show(page, point, form, areas, status=400)
    page.session.flash("De gegevens van uw steunpunt zijn opgeslagen. Iedereen ziet ze nu zo.")
    return page.redirect(HOME)


def _conflict(page, typed, areas):
    """Someone else saved first: the entry as it is now in the form, and what this employee
    typed that differs from it, to take over again."""
    current = _point(page)
    fresh = _form_of(current)
    changes = [(label, KIND_NAMES.get(typed.get(name), typed.get(name)) if name == "soort"
                else typed.get(name))
               for name, label in LABELS.items() if typed.get(name) != fresh.get(name)]
    if sorted(areas) != sorted(current["areas"]):
        changes.append(("Hulp", ", ".join(AREA_NAMES.get(a, a) for a in areas)))
    fresh.fail("", CONFLICT)
    return _show(page, current, fresh, changes=changes, status=409)
