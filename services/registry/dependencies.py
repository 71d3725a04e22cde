"""The registry service's nameko dependencies besides its store."""
import time

from nameko.extensions import DependencyProvider

from common import config as settings
from services.registry.search import SearchIndex


class LiveSearchIndex:
    """This process's search index, kept current with the store.

    Each kind of data the index is built from ("support_points", "pc4_areas") has a
    generation counter in the store that every change bumps. This process's own change
    goes into its index at once when nothing else changed in between; otherwise the index
    is dropped and rebuilt by the next search. A change by another process is noticed when
    the stored generations are compared, at most every ``max_age`` seconds."""

    def __init__(self, max_age):
        self.max_age = max_age
        self.index = None
        self.checked_at = 0.0

    def current(self, store):
        """The index to search, rebuilt first when the stored data has moved on."""
        now = time.monotonic()
        if self.index is not None and now - self.checked_at < self.max_age:
            return self.index
        generations = store.generations()
        if self.index is None or self.index.generations != generations:
            self.index = SearchIndex(store.all_pc4_areas(), store.all_support_points(),
                                     generations)
        self.checked_at = now
        return self.index

    def changed(self, store, kind, document=None):
        """Tells every registry process that ``kind`` changed; ``document``: the support
        point this process just stored."""
        generation = store.bump_generation(kind)
        index = self.index
        if index is None:
            return
        if document is not None and index.generations.get(kind, 0) == generation - 1:
            index.put(document)
            index.generations[kind] = generation
        else:
            self.index = None    # rebuilt by the next search


class SearchIndexHolder(DependencyProvider):
    """One ``LiveSearchIndex`` per process, shared by its workers; how old it may get
    before the stored generations are compared again: SEARCH_INDEX_MAX_AGE_MS."""

    def setup(self):
        max_age_ms = settings.int_setting(self.container.config, "SEARCH_INDEX_MAX_AGE_MS", 500)
        self.live = LiveSearchIndex(max_age_ms / 1000)

    def get_dependency(self, worker_ctx):
        return self.live
