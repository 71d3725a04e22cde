"""The campaign service's entrypoints: information bags (stock, orders, allocation rounds,
local inserts) and the #deeljezorg campaign, with the read models of the registry's events
they need."""
import uuid

from nameko.timer import timer
from pymongo.errors import DuplicateKeyError

from common import clock, metrics
from common.calls import rpc
from common.errors import BadUserInput, Forbidden
from common.consumers import handles_event
from common.schemas.campaign import BagOrderInput, CampaignInput, PrintRunInput
from common.service import PlatformService
from common.storage import Storage, once_per_request
from services.campaign import allocation, domain, leaflet
from services.campaign.storage import CampaignStore


def _today():
    return clock.today().isoformat()


class CampaignService(PlatformService):
    name = "campaign"
    store = Storage(CampaignStore)

    # --- read models of the registry's events --------------------------------------------

    @handles_event("municipality.imported")
    def on_municipality_imported(self, event):
        municipality = domain.municipality_projection(event.parsed_payload())
        return self.store.apply_once(event.event_id, lambda session: self.store.put_municipality(
            municipality, session))

    @handles_event("support_point.registered")
    @handles_event("support_point.updated")
    @handles_event("support_point.deactivated")
    def on_support_point_changed(self, event):
        """Keeps the point's newest version; a point that running campaigns reach and that
        has not had their material yet gets it now, without anyone asking."""
        point = domain.support_point_projection(event.parsed_payload())

        def work(session):
            self.store.project_support_point(point, session)
            current = self.store.support_point(point["_id"], session)
            for campaign in self.store.running_campaigns(_today(), session):
                if domain.reaches(campaign, current):
                    self.store.record_distribution(domain.distribution(
                        campaign, current["_id"], clock.now(), event.type), session)

        handled = self.store.apply_once(event.event_id, work)
        self.log.info("campaign.support_point_projected", support_point_id=point["_id"],
                      duplicate=not handled)
        return handled

    # --- the stock -------------------------------------------------------------------------

    @rpc
    def bag_stock(self, actor):
        domain.may_run_campaigns(actor)
        return domain.stock_view(self.store.stock())

    @rpc
    @once_per_request
    def add_print_run(self, quantity, actor, run_id=None):
        """A print run adds to ``printed`` and ``available``. ``run_id`` makes it happen
        once however often it is sent (the demo seed uses it), as does a request identity,
        which answers the stock as it was then."""
        domain.may_run_campaigns(actor)
        run = PrintRunInput.parsed({"quantity": quantity}, "")
        document = {"_id": run_id or str(uuid.uuid4()), "quantity": run.quantity,
                    "at": clock.now(), "by": domain.actor_trace(actor)}
        stock = {}

        def work(session):
            added = self.store.add_print_run(document, session)
            stock.update(self.store.stock(session))   # as it is in this transaction
            return added

        try:
            added = self.store.in_transaction(work)
        except DuplicateKeyError:    # the same run recorded at the same moment elsewhere
            added = False
        self.log.info("campaign.print_run_added", quantity=run.quantity, added=added)
        return domain.stock_view(stock if added else self.store.stock())

    # --- bag orders ------------------------------------------------------------------------

    @rpc
    @once_per_request
    def order_bags(self, data, actor):
        """A municipality's order (or a support point's, for its own municipality); allocated
        in full at once when the available stock covers it, otherwise it waits."""
        order_input = BagOrderInput.parsed(data, "")
        code = order_input.municipality_code
        municipality = self.store.municipality(code)
        if municipality is None:
            raise BadUserInput("municipalityCode: unknown municipality", field="municipalityCode")
        own_point = self.store.support_point((actor or {}).get("support_point")) \
            if (actor or {}).get("role") == "support_point" else None
        domain.may_order_for(actor, code, own_point)
        point_id = domain.ordering_point(actor, own_point, order_input.support_point_id,
                                         self.store.support_point(order_input.support_point_id),
                                         code)
        now = clock.now()
        waiting = domain.new_order(order_input, actor, point_id, now)
        insert = leaflet.compose(code, municipality, self.store.points_serving_each([code])[code],
                                 waiting["own_lines"], now)
        allocated = domain.allocated_in_full(waiting, insert, now)

        def work(session):
            document = self.store.place_order(waiting, allocated, session)
            self._announce(session, document, len(document["history"]))
            return document

        stored = self.store.in_transaction(work)
        self.log.info("campaign.bags_ordered", order_id=stored["_id"], municipality_code=code,
                      quantity=stored["quantity_requested"], status=stored["status"])
        return domain.order_view(stored)

    @rpc
    def bag_orders(self, municipality_code, actor):
        """Orders oldest first: every order, or one municipality's."""
        if municipality_code is not None:
            municipality_code = domain.municipality_code(municipality_code)
        own_point = self.store.support_point((actor or {}).get("support_point"))
        code = domain.orders_scope(actor, municipality_code, own_point)
        return [domain.order_view(order) for order in self.store.orders(code)]

    @rpc
    @once_per_request
    def mark_bag_order_shipped(self, order_id, actor):
        shipped = self._order_step(order_id, "ship", actor)
        metrics.BAGS_SHIPPED.labels(shipped["municipality_code"]).inc(
            shipped["history"][-1]["quantity"])
        return domain.order_view(shipped)

    @rpc
    @once_per_request
    def mark_bag_order_delivered(self, order_id, actor):
        return domain.order_view(self._order_step(order_id, "deliver", actor))

    @rpc
    @once_per_request
    def cancel_bag_order(self, order_id, reason, actor):
        """From REQUESTED or ALLOCATED; the allocated bags go back to the available stock."""
        return domain.order_view(self._order_step(order_id, "cancel", actor, reason))

    def _order_step(self, order_id, action, actor, reason=None):
        order = domain.require_found(self.store.order(order_id))
        domain.may_order_for(actor, order["municipality_code"],
                             self.store.support_point((actor or {}).get("support_point")))
        change = domain.order_change(order, domain.step(order["status"], action, actor, reason),
                                     actor, clock.now(), reason=reason)

        def work(session):
            changed = self.store.change_order(change, session)
            self._announce(session, changed)
            return changed

        changed = self.store.in_transaction(work)
        self.log.info(f"campaign.bag_order_{action}", order_id=changed["_id"],
                      municipality_code=changed["municipality_code"], status=changed["status"])
        return changed

    def _announce(self, session, order, entries=1):
        self.outbox.record_many(session, domain.announced(order, entries))

    @rpc
    @once_per_request
    def run_bag_allocation(self, actor):
        """Shares the available bags over the waiting orders in proportion to population
        (largest remainder); the answer explains every share."""
        domain.may_run_campaigns(actor)
        now = clock.now()

        def work(session):
            available, waiting, municipalities = self.store.round_input(session)
            given = allocation.allocation_round(available, waiting, municipalities)
            serving = self.store.points_serving_each(domain.completed_municipalities(given))

            def insert_for(order):
                code = order["municipality_code"]
                return leaflet.compose(code, municipalities.get(code), serving[code],
                                       order["own_lines"], now)

            document = domain.round_document(available, given, actor, now)
            changed = self.store.save_round(
                document, domain.round_changes(given, actor, now, insert_for), available, session)
            self.outbox.record_many(
                session, [event for order in changed for event in domain.announced(order)])
            return document, {**{o["_id"]: o for o in waiting},
                              **{o["_id"]: o for o in changed}}

        document, orders = self.store.in_transaction(work)
        self.log.info("campaign.allocation_round", round_id=document["_id"],
                      available_before=document["available_before"],
                      allocated=document["allocated"], orders=len(document["allocations"]))
        return domain.round_view(document, orders)

    @rpc
    def bag_order_insert(self, order_id, actor):
        """The local insert of an allocated order, to print, for those who may see the order."""
        order = domain.require_found(self.store.order(order_id))
        if (actor or {}).get("role") not in domain.ORDERING_ROLES:
            raise Forbidden("this operation is not allowed for your role")
        domain.may_order_for(actor, order["municipality_code"],
                             self.store.support_point((actor or {}).get("support_point")))
        return leaflet.printable(order, domain.require_insert(order))

    # --- the campaign ----------------------------------------------------------------------

    @rpc
    @once_per_request
    def create_campaign(self, data, actor):
        domain.may_run_campaigns(actor)
        campaign_input = CampaignInput.parsed(data)
        codes = campaign_input.municipality_codes
        domain.require_known_municipalities(codes, self.store.municipalities(codes))
        campaign = domain.new_campaign(campaign_input, actor, clock.now())

        def work(session):
            self.store.insert_campaign(campaign, session)
            self.outbox.record(session, "campaign.created", domain.campaign_event(campaign, 0))

        self.store.in_transaction(work)
        self.log.info("campaign.created", campaign_id=campaign["_id"], scope=campaign["scope"])
        return domain.campaign_view(campaign, 0)

    @rpc
    @once_per_request
    def launch_campaign(self, campaign_id, actor):
        """Distributes the material to every active support point in scope that has not had
        it; launching again distributes only to points that were missed (none, normally)."""
        domain.may_run_campaigns(actor)
        campaign = domain.require_found(self.store.campaign(campaign_id), "campaign")
        domain.require_launchable(campaign, clock.today())
        # Running first: a point registered from here on gets the material from its event.
        campaign = self.store.mark_launched(campaign["_id"], clock.now()) or campaign
        added = self._distribute(campaign, "launch")
        reached = self.store.reached([campaign["_id"]]).get(campaign["_id"], 0)

        def announce(session):
            document = self.store.mark_launch_announced(campaign["_id"], session)
            if document is not None:
                self.outbox.record(session, "campaign.launched",
                                   domain.campaign_event(document, reached))

        self.store.in_transaction(announce)
        self.log.info("campaign.launched", campaign_id=campaign["_id"], distributed=added,
                      reached=reached)
        return domain.campaign_view({**campaign, "launched": True}, reached)

    @timer(interval=60)
    def distribute_running_campaigns(self):
        """Catches up on any point a launch and its registration event both missed (they
        ran at the same moment) or that a launch did not reach before it was interrupted."""
        for campaign in self.store.running_campaigns(_today()):
            self._distribute(campaign, "catch-up")

    def _distribute(self, campaign, via):
        done = self.store.distributed_point_ids(campaign["_id"])
        now = clock.now()
        return self.store.record_distributions([
            domain.distribution(campaign, point_id, now, via)
            for point_id in self.store.point_ids_serving(domain.participating(campaign))
            if point_id not in done])

    @rpc
    @once_per_request
    def opt_out_of_campaign(self, campaign_id, municipality_code, actor):
        """A municipality declines a regional campaign: from now on its support points get
        nothing from it."""
        code = domain.municipality_code(municipality_code)
        domain.may_opt_out(actor, code)
        campaign = domain.require_found(self.store.campaign(campaign_id), "campaign")
        domain.require_opt_out_allowed(campaign, code)
        reached = self.store.reached([campaign["_id"]]).get(campaign["_id"], 0)

        def work(session):
            document = self.store.add_opt_out(campaign["_id"], code, session)
            if document is not None:
                self.outbox.record(session, "campaign.opted_out",
                                   domain.campaign_event(document, reached))
            return document

        changed = self.store.in_transaction(work)
        self.log.info("campaign.opted_out", campaign_id=campaign["_id"], municipality_code=code,
                      already=changed is None)
        return domain.campaign_view(changed or campaign, reached)

    @rpc
    def support_point_materials(self, actor):
        """The campaign material distributed to the calling support point, newest first."""
        point_id = domain.may_see_materials(actor)
        return [domain.material_view(d, c) for d, c in self.store.distributions_to(point_id)]

    @rpc
    def campaigns(self, actor):
        found = self.store.campaigns(including=domain.campaigns_visible_to(actor))
        reached = self.store.reached([c["_id"] for c in found])
        return [domain.campaign_view(c, reached.get(c["_id"], 0)) for c in found]
