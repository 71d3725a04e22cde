"""The declaration service's nameko dependencies besides its store."""
import time
from datetime import timedelta

from nameko.extensions import DependencyProvider
from prometheus_client import Counter

from common import clock
from common import config as settings

# No client label: which partner failed is in the log; the metric shows that it happens.
FAILED_CHECKS = Counter(
    "mantelzorg_declaration_failed_checks_total",
    "Checks with an unknown reference, a wrong code or a bad token.")
REFUSED_CHECKS = Counter(
    "mantelzorg_declaration_refused_checks_total",
    "Checks answered 'not valid' unseen because the client had too many failures.")


class FailedChecks:
    """Failed checks per partner client, and which clients are blocked for the rest of
    their window.

    The failures are counted in the store, so the count is exact across replicas. Every
    check asks whether its client is blocked; asking the store each time cost a lookup per
    check, the most frequent call of the service. So this process keeps the blocked clients
    in memory: a client it blocks itself is blocked at once, one blocked by another replica
    once this process has re-read them, at most ``refresh_seconds`` later."""

    def __init__(self, max_failures, window_seconds, refresh_seconds):
        self.max_failures = max_failures
        self.window = timedelta(seconds=window_seconds)
        self.refresh_seconds = refresh_seconds
        self._blocked_until = {}
        self._read_at = None
        self._reading = False

    def blocked(self, client, store):
        """Whether a check by ``client`` is to be refused unseen; each refusal is counted.
        ``store``: the service's DeclarationStore, where the counts are kept."""
        now = time.monotonic()
        due = self._read_at is None or now - self._read_at >= self.refresh_seconds
        if due and not self._reading:   # one re-read at a time; the others use what is known
            self._reread(store)
        until = self._blocked_until.get(client)
        if until is not None and until > clock.now():
            REFUSED_CHECKS.inc()
            return True
        return False

    def count_failure(self, client, store):
        FAILED_CHECKS.inc()
        now = clock.now()
        window = store.count_check_failure(client, now - self.window, now)
        if window["failures"] >= self.max_failures:
            self._blocked_until[client] = window["window_start"] + self.window

    def _reread(self, store):
        self._reading = True
        try:
            now = clock.now()
            found = store.windows_at_limit(now - self.window, self.max_failures)
            # A block lasts until its window ends, whoever learnt of it first: merge with
            # what is known now (this process may have blocked a client while the store
            # answered), and forget only the ended ones.
            known = {client: until for client, until in self._blocked_until.items() if until > now}
            known.update((client, start + self.window) for client, start in found.items())
            self._blocked_until = known
            self._read_at = time.monotonic()
        finally:
            self._reading = False


class FailedCheckLimit(DependencyProvider):
    """One ``FailedChecks`` per process, shared by its workers, set from the config."""

    def setup(self):
        config = self.container.config
        self.failed_checks = FailedChecks(
            settings.int_setting(config, "CHECK_MAX_FAILURES", 10),
            settings.int_setting(config, "CHECK_FAILURE_WINDOW_SECONDS", 300),
            settings.int_setting(config, "CHECK_BLOCK_REFRESH_SECONDS", 1))

    def get_dependency(self, worker_ctx):
        return self.failed_checks
