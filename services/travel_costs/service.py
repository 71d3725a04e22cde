"""The travel-cost fund's entrypoints."""
from nameko.rpc import rpc

from common.messaging import handles_event
from common.service import PlatformService
from common.storage import Storage
from services.travel_costs import domain
from services.travel_costs.storage import DECLARATIONS, TravelCostsStore


class TravelCostsService(PlatformService):
    name = "travel_costs"
    store = Storage(TravelCostsStore)

    @handles_event("declaration.issued")
    @handles_event("declaration.revoked")
    @handles_event("declaration.expired")
    def on_declaration_changed(self, event):
        declaration = domain.declaration_projection(event, event.parsed_payload())
        return self.store.apply_once(event.event_id, lambda session: self.store.replace_if_newer(
            DECLARATIONS, declaration, "changed_at", session=session))

    @rpc
    def declaration_status(self, reference):
        """The fund's view of a declaration: the last status it was told of."""
        document = self.store[DECLARATIONS].find_one({"_id": reference}, {"owner": 0})
        return document and {"reference": document["_id"], "status": document["status"],
                             "valid_until": document["valid_until"]}
