"""The campaign service's entrypoints."""
from nameko.rpc import rpc

from common.messaging import handles_event
from common.service import PlatformService
from common.storage import Storage
from services.campaign import domain
from services.campaign.storage import MUNICIPALITIES, SUPPORT_POINTS, CampaignStore


class CampaignService(PlatformService):
    name = "campaign"
    store = Storage(CampaignStore)

    @handles_event("municipality.imported")
    def on_municipality_imported(self, event):
        payload = event.parsed_payload()
        return self.store.apply_once(event.event_id, lambda session: self.store[MUNICIPALITIES].replace_one(
            {"_id": payload.code}, {"_id": payload.code, "name": payload.name}, upsert=True,
            session=session))

    @handles_event("support_point.registered")
    @handles_event("support_point.updated")
    @handles_event("support_point.deactivated")
    def on_support_point_changed(self, event):
        point = domain.support_point_projection(event.parsed_payload())
        handled = self.store.apply_once(event.event_id, lambda session: self.store.replace_if_newer(
            SUPPORT_POINTS, point, "version", session=session))
        self.log.info("campaign.support_point_projected", support_point_id=point["_id"],
                      duplicate=not handled)
        return handled

    @rpc
    def support_point_reach(self, municipality_codes=None):
        """How many active support points a campaign in these municipalities reaches."""
        return self.store[SUPPORT_POINTS].count_documents(domain.reach_filter(municipality_codes))
