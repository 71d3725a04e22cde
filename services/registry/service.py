"""The registry service's entrypoints."""
from nameko.rpc import rpc

from common.errors import NotFound
from common.service import PlatformService
from common.storage import Storage, utcnow
from services.registry import domain
from services.registry.storage import HISTORY, MUNICIPALITIES, SUPPORT_POINTS, ensure_indexes


class RegistryService(PlatformService):
    name = "registry"
    store = Storage(ensure_indexes)

    @rpc
    def import_municipalities(self, rows):
        """Upsert CBS municipality rows; idempotent. Publishes municipality.imported for
        every new or changed municipality. Returns a report with rejected rows."""
        report = {"imported": 0, "unchanged": 0, "rejected": []}
        for number, row in enumerate(rows, start=2):   # row 1 is the CSV header
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
    def register_support_point(self, data, actor):
        point = domain.parse_support_point(data)
        document = domain.new_support_point(point, utcnow())
        known = self.store[MUNICIPALITIES].distinct(
            "_id", {"_id": {"$in": document["serves_municipality_codes"]}})
        domain.require_known_municipalities(document, known)

        def register(session):
            self.store[SUPPORT_POINTS].insert_one(document, session=session)
            self.store[HISTORY].insert_one({
                "support_point_id": document["_id"], "at": document["created_at"],
                "actor": actor, "change": "registered", "old": None,
                "new": domain.event_payload(document)}, session=session)
            self.outbox.record(session, "support_point.registered", domain.event_payload(document))

        self.store.in_transaction(register)
        self.log.info("registry.support_point_registered", support_point_id=document["_id"])
        return document

    @rpc
    def count_support_points(self):
        return self.store[SUPPORT_POINTS].count_documents({})

    @rpc
    def get_support_point(self, support_point_id):
        document = self.store[SUPPORT_POINTS].find_one({"_id": support_point_id})
        if document is None:
            raise NotFound("support point not found")
        return document
