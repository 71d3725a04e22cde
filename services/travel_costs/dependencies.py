"""The travel-cost fund's nameko dependencies besides its store: its settings, read once per
process from the config, and the PC4 centroids kept in the process."""
import time
from dataclasses import dataclass

from nameko.extensions import DependencyProvider

from common.schemas.travel_costs import sepa_account
from services.travel_costs.domain import FundRules
from services.travel_costs.sepa import SUPPORTED_SCHEMAS


@dataclass(frozen=True)
class FundAccount:
    """The fund's own account, which the payouts are debited from."""
    name: str
    iban: str
    bic: str | None


@dataclass(frozen=True)
class FundSettings:
    rules: FundRules
    account: FundAccount
    sepa_schema: str
    declaration_timeout: float     # seconds to wait for the declaration service
    payout_lease_seconds: int      # how long a batch may take before another takes it over


class FundConfiguration(DependencyProvider):
    """Checks the fund's settings when the service starts: a wrong rate table, account or
    file version stops it there, not at the first claim or payout."""

    def setup(self):
        config = self.container.config
        iban, derived_bic = sepa_account(config.get("FUND_IBAN"))
        schema = str(config.get("SEPA_SCHEMA") or SUPPORTED_SCHEMAS[0])
        if schema not in SUPPORTED_SCHEMAS:
            raise ValueError(f"SEPA_SCHEMA must be one of {', '.join(SUPPORTED_SCHEMAS)}")
        self.settings = FundSettings(
            rules=FundRules.from_config(config),
            account=FundAccount(name=str(config.get("FUND_NAME") or "Reiskostenfonds Mantelzorg"),
                                iban=iban, bic=str(config.get("FUND_BIC") or derived_bic or "") or None),
            sepa_schema=schema,
            declaration_timeout=float(config.get("DECLARATION_TIMEOUT_SECONDS") or 10),
            payout_lease_seconds=int(config.get("PAYOUT_LEASE_SECONDS") or 1800))

    def get_dependency(self, worker_ctx):
        return self.settings


class Centroids(DependencyProvider):
    """The PC4 centroids the fund knows, kept in this process: every claim needs those of its
    trips, and they change only with an import of reference data. The whole table (about
    4,000 areas) is read again at most every ``REFRESH_SECONDS``, and at the next claim after
    this process stored an import; a PC4 not kept is looked up in the store. So an import
    another replica stored reaches this one within that time."""

    REFRESH_SECONDS = 60

    def setup(self):
        self._kept, self._read_at = None, 0.0

    def get_dependency(self, worker_ctx):
        return self

    def of(self, store, pc4s):
        """PC4 -> (latitude, longitude) of the given PC4s the fund knows."""
        if self._kept is None or time.monotonic() - self._read_at > self.REFRESH_SECONDS:
            self._kept, self._read_at = store.centroids(), time.monotonic()
        wanted = set(pc4s)
        found = {pc4: self._kept[pc4] for pc4 in wanted if pc4 in self._kept}
        if len(found) < len(wanted):
            looked_up = store.centroids(wanted - set(found))
            self._kept.update(looked_up)
            found.update(looked_up)
        return found

    def forget(self):
        """An import was stored: the next claim reads the table again."""
        self._kept = None
