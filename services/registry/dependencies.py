"""The registry service's nameko dependencies besides its store."""
from nameko.extensions import DependencyProvider


class SearchIndexHolder(DependencyProvider):
    """Keeps this process's search index between workers. This process's own changes go
    into it at once; every SEARCH_INDEX_MAX_AGE_MS it compares the stored generations and
    is rebuilt when another process changed the data."""

    def setup(self):
        self.current = None
        self.checked_at = 0.0
        self.max_age = int(self.container.config.get("SEARCH_INDEX_MAX_AGE_MS", 500)) / 1000

    def get_dependency(self, worker_ctx):
        return self

