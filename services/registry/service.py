"""The registry service's entrypoints."""
import time

from nameko.rpc import rpc
from pymongo import ASCENDING, ReplaceOne, ReturnDocument
from pymongo.errors import DuplicateKeyError

from common.errors import BadUserInput, DomainError
from common.service import PlatformService
from common.storage import Storage, utcnow
from common.validators import validate_municipality_code
from services.registry import domain
from services.registry.dependencies import SearchIndexHolder
from services.registry.storage import (GENERATIONS, HISTORY, MUNICIPALITIES, PC4_AREAS,
                                       SUPPORT_POINTS, RegistryStore)


def _now():
    """The time as the store keeps it (milliseconds), so an answer equals a later read."""
    now = utcnow()
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


class RegistryService(PlatformService):
    name = "registry"
    store = Storage(RegistryStore)
    search_index = SearchIndexHolder()

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
            if self.store[MUNICIPALITIES].find_one(document) is not None:
                report["unchanged"] += 1
                continue

            def upsert(session, document=document):
                self.store[MUNICIPALITIES].replace_one(
                    {"_id": document["_id"]}, document, upsert=True, session=session)
                self.outbox.record(session, "municipality.imported", {
                    "code": document["_id"], "name": document["name"],
                    "province": document["province"], "population": document["population"]})

            self.store.in_transaction(upsert)
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
        known = set(self.store[MUNICIPALITIES].distinct("_id"))
        wanted = [(row.get("pc4") or "").strip() for row in rows]
        stored = {d["_id"]: d for d in self.store[PC4_AREAS].find({"_id": {"$in": wanted}})}
        changed = []
        for number, row in enumerate(rows, start=first_row):
            try:
                document = domain.pc4_row(row, known)
            except ValueError as exc:
                report["rejected"].append({"row": number, "reason": str(exc)})
                continue
            if stored.get(document["_id"]) == document:
                report["unchanged"] += 1
                continue
            stored[document["_id"]] = document
            changed.append(document)
            report["imported"] += 1
        if changed:
            writes = [ReplaceOne({"_id": d["_id"]}, d, upsert=True) for d in changed]

            def save(session):
                self.store[PC4_AREAS].bulk_write(writes, ordered=True, session=session)
                self.outbox.record(session, "pc4_areas.imported", domain.pc4_areas_event(changed))

            self.store.in_transaction(save)
            self._changed("pc4_areas")
        self.log.info("registry.pc4_areas_imported", imported=report["imported"],
                      rejected=len(report["rejected"]))
        return report

    @rpc
    def announce_pc4_areas(self, batch=500):
        """Publishes every stored PC4 area again, ``batch`` areas a pc4_areas.imported event:
        for a consumer that started after the areas were imported (``mantelzorg
        announce-pc4-areas``). Returns how many areas it announced."""
        areas = list(self.store[PC4_AREAS].find({}).sort("_id", ASCENDING))
        for start in range(0, len(areas), batch):
            event = domain.pc4_areas_event(areas[start:start + batch])
            self.store.in_transaction(
                lambda session, event=event: self.outbox.record(session, "pc4_areas.imported", event))
        self.log.info("registry.pc4_areas_announced", areas=len(areas))
        return len(areas)

    # --- support points --------------------------------------------------------------------

    @rpc
    def register_support_point(self, data, actor):
        point = domain.parse_support_point(data)
        document = domain.new_support_point(point, _now())
        domain.authorise("register", actor, document["municipality_code"])
        self._require_known_municipalities(document)
        self._save(document, "registered", None, actor)
        return domain.public_view(document)

    @rpc
    def update_support_point(self, support_point_id, data, expected_version, actor):
        """Replace what a client supplies; a stale ``expected_version`` is a Conflict and
        changes nothing."""
        stored = domain.require_found(self._find(support_point_id))
        point = domain.parse_support_point(data)
        domain.authorise("update", actor, stored["municipality_code"], stored["_id"],
                         new_seat=point.municipality_code)
        domain.next_state(stored, "update")
        domain.require_version(stored, expected_version)
        document = domain.updated_support_point(stored, point, _now())
        self._require_known_municipalities(document)
        self._save(document, "updated", stored, actor)
        return domain.public_view(document)

    @rpc
    def deactivate_support_point(self, support_point_id, reason, actor):
        """Kept, marked inactive, left out of searches; the reason goes into its history."""
        reason = (reason or "").strip()
        if not reason or len(reason) > 500:
            raise BadUserInput("reason: give a reason of at most 500 characters", field="reason")
        stored = domain.require_found(self._find(support_point_id))
        domain.authorise("deactivate", actor, stored["municipality_code"], stored["_id"])
        domain.next_state(stored, "deactivate")
        document = {**stored, "active": False, "deactivation_reason": reason,
                    "version": stored["version"] + 1, "updated_at": _now()}
        self._save(document, "deactivated", stored, actor, reason)
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

    def _import_row(self, row, actor):
        data, external_id = domain.support_point_row(row)
        point = domain.parse_support_point(data, field="")
        key = domain.import_key(point, external_id)
        stored = self.store[SUPPORT_POINTS].find_one({"import_key": key})
        if stored is None:
            document = domain.new_support_point(point, _now(), import_key=key)
            domain.authorise("register", actor, document["municipality_code"])
            self._require_known_municipalities(document, field="")
            self._save(document, "registered", None, actor)
            return "registered"
        if domain.same_content(stored, point):
            return "unchanged"
        domain.authorise("update", actor, stored["municipality_code"], stored["_id"],
                         new_seat=point.municipality_code)
        domain.next_state(stored, "update")
        document = domain.updated_support_point(stored, point, _now())
        self._require_known_municipalities(document, field="")
        self._save(document, "updated", stored, actor)
        return "updated"

    @rpc
    def count_support_points(self):
        return self.store[SUPPORT_POINTS].count_documents({})

    @rpc
    def get_support_point(self, support_point_id):
        return domain.public_view(domain.require_found(self._find(support_point_id)))

    @rpc
    def support_point_history(self, support_point_id, actor):
        """The audit trail of a point, oldest first, for those who may edit it."""
        stored = domain.require_found(self._find(support_point_id))
        domain.authorise("update", actor, stored["municipality_code"], stored["_id"])
        return list(self.store[HISTORY].find({"support_point_id": support_point_id}, {"_id": 0})
                    .sort([("at", ASCENDING), ("version", ASCENDING)]))

    # --- search ----------------------------------------------------------------------------

    @rpc
    def search_support_points(self, municipality_code=None, postcode=None, area=None, first=20,
                              after=None, include_inactive=False):
        """A page of points ordered by name: {items, total, next_cursor}. The postcode
        stands for the municipality its PC4 area belongs to."""
        index = self._index()
        codes = []
        if municipality_code is not None:
            try:
                codes.append(validate_municipality_code(municipality_code))
            except ValueError as exc:
                raise BadUserInput(f"municipalityCode: {exc}", field="municipalityCode") from None
        if postcode is not None:
            codes.append(index.area_of(postcode)[3])
        keys, total, following = index.search(
            codes, domain.known_area(area), domain.page_size(first, "first"),
            domain.decode_cursor(after) if after else None, include_inactive)
        return {"items": [index.documents[key[1]] for key in keys], "total": total,
                "next_cursor": domain.encode_cursor(following) if following else None}

    @rpc
    def nearest_support_points(self, postcode, area=None, limit=5):
        """Active points nearest to the PC4 centroid of ``postcode``, nearest first, each
        with ``distance_km`` between the centroids."""
        index = self._index()
        found = index.nearest(postcode, domain.known_area(area), domain.page_size(limit, "limit"))
        return [{**index.documents[point_id], "distance_km": round(km, 2)}
                for km, point_id in found]

    # --- helpers -------------------------------------------------------------------------

    def _find(self, support_point_id):
        return self.store[SUPPORT_POINTS].find_one({"_id": str(support_point_id)})

    def _require_known_municipalities(self, document, field="input"):
        known = self.store[MUNICIPALITIES].distinct(
            "_id", {"_id": {"$in": document["serves_municipality_codes"]}})
        domain.require_known_municipalities(document, known, field)

    def _save(self, document, change, old, actor, reason=None):
        """The point, its history entry and its event, in one transaction. ``old`` is the
        version the change was made from: if another change came first, nothing is written."""
        entry = domain.history_entry(document, change, old, actor, document["updated_at"], reason)

        def write(session):
            points = self.store[SUPPORT_POINTS]
            if old is None:
                points.insert_one(document, session=session)
            elif points.replace_one({"_id": document["_id"], "version": old["version"]},
                                    document, session=session).matched_count != 1:
                domain.require_version(points.find_one({"_id": document["_id"]}, session=session),
                                       old["version"])
            self.store[HISTORY].insert_one(entry, session=session)
            self.outbox.record(session, f"support_point.{change}", domain.event_payload(document))

        self.store.in_transaction(write)
        self._changed("support_points", document)
        self.log.info(f"registry.support_point_{change}", support_point_id=document["_id"],
                      version=document["version"])

    def _changed(self, kind, document=None):
        """Tell every registry process its search index is stale; keep this one's current
        when nothing else changed in between."""
        generation = self.store[GENERATIONS].find_one_and_update(
            {"_id": kind}, {"$inc": {"generation": 1}}, upsert=True,
            return_document=ReturnDocument.AFTER)["generation"]
        holder = self.search_index
        index = holder.current
        if index is None:
            return
        if document is not None and index.generations.get(kind, 0) == generation - 1:
            index.put(document)
            index.generations[kind] = generation
        else:
            holder.current = None    # rebuilt by the next search

    def _index(self):
        holder = self.search_index
        now = time.monotonic()
        if holder.current is not None and now - holder.checked_at < holder.max_age:
            return holder.current
        generations = {d["_id"]: d["generation"] for d in self.store[GENERATIONS].find({})}
        if holder.current is None or holder.current.generations != generations:
            holder.current = domain.SearchIndex(
                self.store[PC4_AREAS].find({}), self.store[SUPPORT_POINTS].find({}), generations)
        holder.checked_at = now
        return holder.current
