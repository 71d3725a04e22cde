"""The travel-cost fund's nameko dependencies besides its store: its settings, read once per
process from the config."""
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
