"""The declaration service's entrypoints."""
from nameko.rpc import rpc

from common.messaging import handles_event
from common.service import PlatformService
from common.storage import Storage
from services.declaration import domain
from services.declaration.storage import MUNICIPALITIES, ensure_indexes


class DeclarationService(PlatformService):
    name = "declaration"
    store = Storage(ensure_indexes)

    @handles_event("municipality.imported")
    def on_municipality_imported(self, event):
        municipality = domain.municipality_projection(event.parsed_payload())
        return self.store.apply_once(event.event_id, lambda session: self.store[MUNICIPALITIES].replace_one(
            {"_id": municipality["_id"]}, municipality, upsert=True, session=session))

    @rpc
    def municipality(self, code):
        """A municipality this service knows (decisions are made per municipality)."""
        return self.store[MUNICIPALITIES].find_one({"_id": code})
