"""The registry service's entrypoints."""
from pymongo.errors import DuplicateKeyError

from common import clock
from common.calls import rpc
from common.errors import BadUserInput, DomainError
from common.limits import page_size
from common.service import PlatformService
from common.storage import Storage, once_per_request
from common.validators import pc4_of, validate_municipality_code
from services.registry import domain, search
from services.registry.dependencies import SearchIndexHolder
from services.registry.storage import MUNICIPALITIES, PC4_AREAS, SUPPORT_POINTS, RegistryStore


class RegistryService(PlatformService):
    name = "registry"
    store = Storage(RegistryStore)
    search_index = SearchIndexHolder()
    republishable = {
        "municipality.imported": (MUNICIPALITIES, domain.municipality_event_payload, {}),
        # every point as it is now, active or not
        "support_point.updated": (SUPPORT_POINTS, domain.event_payload, {}),
        # one area an event: a fund deployed after the areas were imported gets them all
        "pc4_areas.imported": (PC4_AREAS, lambda area: domain.pc4_areas_event([area]), {}),
    }

    # --- reference data ------------------------------------------------------------------

    @rpc
    def import_municipalities(self, rows, first_row=2):
        """Upsert CBS municipality rows; idempotent. Publishes municipality.imported for
        every new or changed municipality. Returns a report with rejected rows."""
        report = {"imported": 0, "unchanged": 0, "rejected": []}
        for number, row in enumerate(rows, start=first_row):   # row 1 is the CSV header
            try:
                document = domain.municipality_row(row)
            except ValueError as exc:
                report["rejected"].append({"row": number, "reason": str(exc)})
                continue
            if self.store.stored_as(document):
                report["unchanged"] += 1
                continue
            self._save_municipality(document)
            report["imported"] += 1
        self.log.info("registry.municipalities_imported", imported=report["imported"],
                      rejected=len(report["rejected"]))
        return report

    @rpc
    def import_pc4_areas(self, rows, first_row=2):
        """Upsert rows of pc4.csv (postcode area, municipality, centroid); idempotent.
        A row whose municipality is not imported is rejected. The new and changed areas of
        one call are published as one pc4_areas.imported event. Returns a report."""
        report = {"imported": 0, "unchanged": 0, "rejected": []}
        known = self.store.municipality_codes()
        stored = self.store.pc4_areas((row.get("pc4") or "").strip() for row in rows)
        changed, now = [], clock.now_millis()
        for number, row in enumerate(rows, start=first_row):
            try:
                document = domain.pc4_row(row, known)
            except ValueError as exc:
                report["rejected"].append({"row": number, "reason": str(exc)})
                continue
            if domain.same_pc4_area(stored.get(document["_id"]), document):
                report["unchanged"] += 1
                continue
            # the time of the change, which a republished event of the area carries
            document["updated_at"] = now
            stored[document["_id"]] = document
            changed.append(document)
            report["imported"] += 1
        if changed:

            def work(session):
                self.store.save_pc4_areas(changed, session)
                self.outbox.record(session, "pc4_areas.imported", domain.pc4_areas_event(changed))

            self.store.in_transaction(work)
            self.search_index.changed(self.store, "pc4_areas")
        self.log.info("registry.pc4_areas_imported", imported=report["imported"],
                      rejected=len(report["rejected"]))
        return report

    # --- support points --------------------------------------------------------------------

    @rpc
    def municipalities(self):
        """Every municipality (code and name), sorted by name."""
        return sorted((domain.municipality_view(m) for m in self.store.municipalities()),
                      key=domain.municipality_sort_key)

    @rpc
    def municipality_for_postcode(self, postcode):
        """The municipality of the postcode's PC4 area; None when the area is unknown."""
        try:
            pc4 = pc4_of(postcode)
        except ValueError as exc:
            raise BadUserInput(f"postcode: {exc}", field="postcode") from None
        area = self.store.pc4_area(pc4)
        municipality = area and self.store.municipality(area["municipality_code"])
        return domain.municipality_view(municipality) if municipality else None

    @rpc
    @once_per_request
    def register_support_point(self, data, actor):
        return domain.public_view(self._register(domain.parse_support_point(data), actor))

    @rpc
    @once_per_request
    def update_support_point(self, support_point_id, data, expected_version, actor):
        """Replace what a client supplies; a stale ``expected_version`` is a Conflict and
        changes nothing."""
        stored = domain.require_found(self.store.support_point(support_point_id))
        point = domain.parse_support_point(data)
        return domain.public_view(self._update(stored, point, actor, expected_version))

    @rpc
    @once_per_request
    def deactivate_support_point(self, support_point_id, reason, actor):
        """Kept, marked inactive, left out of searches; the reason goes into its history."""
        reason = domain.required_reason("deactivate", reason)
        stored = domain.require_found(self.store.support_point(support_point_id))
        domain.may_make("deactivate", actor, stored["municipality_code"], stored["_id"])
        domain.next_state(stored, "deactivate")
        document = domain.deactivated_support_point(stored, reason, clock.now_millis())
        self._save(document, "deactivate", stored, actor, reason)
        return domain.public_view(document)

    @rpc
    def import_support_points(self, rows, actor, first_row=2):
        """Rows of the support point CSV format. Each row is registered, updated or left
        unchanged on its own (all or nothing per row); a re-import finds its points again
        by their natural key. Returns a report naming every rejected row and why."""
        report = {"registered": 0, "updated": 0, "unchanged": 0, "rejected": []}
        for number, row in enumerate(rows, start=first_row):
            try:
                outcome = self._import_row(row, actor)
            except DomainError as error:
                report["rejected"].append(domain.rejection(number, error))
                continue
            except DuplicateKeyError:
                report["rejected"].append({"row": number, "column": "row",
                                           "reason": "imported at the same time by another import"})
                continue
            report[outcome] += 1
        self.log.info("registry.support_points_imported", registered=report["registered"],
                      updated=report["updated"], rejected=len(report["rejected"]))
        return report

    @rpc
    def get_support_point(self, support_point_id):
        return domain.public_view(domain.require_found(self.store.support_point(support_point_id)))

    @rpc
    def support_point_history(self, support_point_id, actor):
        """The audit trail of a point, oldest first, for those who may edit it."""
        stored = domain.require_found(self.store.support_point(support_point_id))
        domain.may_make("update", actor, stored["municipality_code"], stored["_id"])
        return domain.history_view(self.store.history_of(stored["_id"]))

    # --- search ----------------------------------------------------------------------------

    @rpc
    def search_support_points(self, municipality_code=None, postcode=None, area=None, first=20,
                              after=None, include_inactive=False):
        """A page of points ordered by name: {items, total, next_cursor}. The postcode
        stands for the municipality its PC4 area belongs to."""
        index = self.search_index.current(self.store)
        codes = []
        if municipality_code is not None:
            try:
                codes.append(validate_municipality_code(municipality_code))
            except ValueError as exc:
                raise BadUserInput(f"municipalityCode: {exc}", field="municipalityCode") from None
        if postcode is not None:
            codes.append(index.area_of(postcode)[3])
        return index.page(codes, domain.known_area(area), page_size(first, "first"),
                          search.decode_cursor(after) if after else None, include_inactive)

    @rpc
    def nearest_support_points(self, postcode, area=None, limit=5):
        """Active points nearest to the PC4 centroid of ``postcode``, nearest first, each
        with ``distance_km`` between the centroids."""
        index = self.search_index.current(self.store)
        found = index.nearest(postcode, domain.known_area(area), page_size(limit, "limit"))
        return [{**index.documents[point_id], "distance_km": round(km, 2)}
                for km, point_id in found]

    # --- helpers -------------------------------------------------------------------------

    def _import_row(self, row, actor):
        data, external_id = domain.support_point_row(row)
        point = domain.parse_support_point(data, field="")
        key = domain.import_key(point, external_id)
        stored = self.store.support_point_by_import_key(key)
        if stored is None:
            self._register(point, actor, field="", import_key=key)
            return "registered"
        if domain.same_content(stored, point):
            return "unchanged"
        self._update(stored, point, actor, field="")
        return "updated"

    def _register(self, point, actor, field="input", import_key=None):
        document = domain.new_support_point(point, clock.now_millis(), import_key=import_key)
        domain.may_make("register", actor, document["municipality_code"])
        self._require_known_municipalities(document, field)
        self._save(document, "register", None, actor)
        return document

    def _update(self, stored, point, actor, expected_version=None, field="input"):
        """``expected_version``: the version the client last read (an import has none)."""
        domain.may_make("update", actor, stored["municipality_code"], stored["_id"],
                         new_seat=point.municipality_code)
        domain.next_state(stored, "update")
        if expected_version is not None:
            domain.require_version(stored, expected_version)
        document = domain.updated_support_point(stored, point, clock.now_millis())
        self._require_known_municipalities(document, field)
        self._save(document, "update", stored, actor)
        return document

    def _require_known_municipalities(self, document, field):
        known = self.store.municipality_codes(among=document["serves_municipality_codes"])
        domain.require_known_municipalities(document, known, field)

    def _save_municipality(self, document):
        """The municipality and its event, in one transaction."""

        def work(session):
            self.store.save_municipality(document, session)
            self.outbox.record(session, "municipality.imported",
                               domain.municipality_event_payload(document))

        self.store.in_transaction(work)

    def _save(self, document, action, old, actor, reason=None):
        """The point, its history entry and its event, in one transaction. ``old`` is the
        version the step was taken from: if another change came first, nothing is written."""
        transition = domain.WORKFLOW.transition(old and domain.state_of(old), action)
        entry = domain.history_entry(document, transition, old, actor, document["updated_at"],
                                     reason)

        def work(session):
            stale = self.store.save_support_point(document, entry, session,
                                                  replaces_version=old and old["version"])
            if stale is None:
                self.outbox.record(session, transition.event, domain.event_payload(document))
            return stale

        stale = self.store.in_transaction(work)
        if stale is not None:
            raise domain.version_conflict()
        self.store.after_commit(
            lambda: self.search_index.changed(self.store, "support_points", document))
        self.log.info(f"registry.{transition.event.replace('.', '_')}",
                      support_point_id=document["_id"], version=document["version"])
