"""The rate limit of failed checks, as two replicas sharing one store see it."""
from datetime import timedelta

import pytest

from common import clock
from services.declaration.dependencies import FailedChecks
from services.declaration.storage import CHECK_FAILURES


@pytest.fixture
def failures(declaration_store):
    """The service's store, where the failures are counted."""
    return declaration_store


def test_the_replica_that_counts_the_last_allowed_failure_blocks_at_once(failures):
    replica = FailedChecks(max_failures=3, window_seconds=300, refresh_seconds=3600)
    assert not replica.blocked("partner:a", failures)   # the first read, then none for an hour
    for _ in range(2):
        replica.count_failure("partner:a", failures)
    assert not replica.blocked("partner:a", failures)
    replica.count_failure("partner:a", failures)
    assert replica.blocked("partner:a", failures)
    assert not replica.blocked("partner:b", failures)
    assert failures[CHECK_FAILURES].find_one({"_id": "partner:a"})["failures"] == 3


def test_failures_on_two_replicas_add_up_and_both_block_after_a_re_read(failures):
    first = FailedChecks(max_failures=4, window_seconds=300, refresh_seconds=3600)
    second = FailedChecks(max_failures=4, window_seconds=300, refresh_seconds=0)
    assert not first.blocked("partner:a", failures)
    for replica in (first, second, first, second):
        replica.count_failure("partner:a", failures)
    assert second.blocked("partner:a", failures)    # it counted the fourth
    assert not first.blocked("partner:a", failures)  # it has not re-read yet
    first.refresh_seconds = 0
    assert first.blocked("partner:a", failures)


def test_a_block_ends_with_its_window(failures):
    replica = FailedChecks(max_failures=2, window_seconds=300, refresh_seconds=0)
    failures[CHECK_FAILURES].insert_one({"_id": "partner:old", "window_start": clock.now() - timedelta(seconds=301),
                         "failures": 50})
    failures[CHECK_FAILURES].insert_one({"_id": "partner:now", "window_start": clock.now() - timedelta(seconds=10),
                         "failures": 2})
    assert not replica.blocked("partner:old", failures)
    assert replica.blocked("partner:now", failures)
    # a failure after the window has ended opens a new window with one failure
    replica.count_failure("partner:old", failures)
    entry = failures[CHECK_FAILURES].find_one({"_id": "partner:old"})
    assert entry["failures"] == 1 and entry["window_start"] > clock.now() - timedelta(seconds=5)
    assert not replica.blocked("partner:old", failures)
