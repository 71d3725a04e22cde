"""Every benchmark runs: each bench/bench_*.py as ``make bench`` runs it (``python -m bench``,
a platform of its own in a throwaway vhost), at a size of seconds, all at once, so that none
can break unnoticed. Its figures mean nothing at this size; that every step ran does. A failed request
or a benchmark's own check of its results makes the run exit 1 (bench/harness.py)."""
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = sorted(path.stem for path in (ROOT / "bench").glob("bench_*.py"))

TINY = {
    # the harness: the ten-municipality sample, and every measured run a few requests
    "BENCH_REFERENCE_DIR": str(ROOT / "ops" / "demo"),
    "BENCH_MAX_REQUESTS": "12",
    "BENCH_MAX_CONCURRENCY": "3",
    "BENCH_CONNECT_SECONDS": "0.2",
    "BENCH_CAPACITY_SECONDS": "0.2",
    "BENCH_CAPACITY_MAX_RATE": "50",
    "BENCH_STOP_GRACE_SECONDS": "0",
    # registry search and campaign
    "BENCH_POINTS": "20",
    "BENCH_SEARCH_REQUESTS": "12",
    # campaign: at least one order per municipality of the sample
    "BENCH_CAMPAIGN_ORDERS": "12",
    "BENCH_CAMPAIGN_PRINT_RUN": "200",
    # declaration check
    "BENCH_CHECK_SIZES": "6,12",
    "BENCH_CHECK_REQUESTS": "12",
    "BENCH_FILING_WINDOW": "3",
    # the store's growth: a state change with 20 and 60 declarations stored
    "BENCH_GROWTH_SIZES": "20,60",
    "BENCH_GROWTH_CHANGES": "5",
    "BENCH_GROWTH_CLAIMS": "40",
    # the outbox relay: 20 and 60 events waiting
    "BENCH_OUTBOX_SIZES": "20,60",
    "BENCH_OUTBOX_HEALTH_CALLS": "5",
    # travel claims
    "BENCH_TRAVEL_CLAIMS": "8",
    "BENCH_TRAVEL_CAREGIVERS": "4",
    "BENCH_TRAVEL_PAYOUTS": "4,8",
    # a second process: a few declarations to check
    "BENCH_SECOND_DECLARATIONS": "6",
    "BENCH_SECOND_REQUESTS": "12",
}


def test_every_benchmark_module_is_run_here():
    assert BENCHMARKS == ["bench_campaign", "bench_declaration_check", "bench_outbox",
                          "bench_registry_search", "bench_second_process", "bench_store_growth",
                          "bench_travel_claims"]


@pytest.fixture(scope="module")
def started():
    """Every benchmark at once, each in a process and with a platform of its own: they
    spend most of their time starting and stopping their platforms and waiting on their
    clients, so side by side they take about as long as the slowest alone."""
    runs = {name: (time.monotonic(), subprocess.Popen(
        [sys.executable, "-m", "bench", name], cwd=ROOT, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
        env={**os.environ, **TINY, "PYTHONWARNINGS": "ignore"})) for name in BENCHMARKS}
    yield runs
    for _, run in runs.values():
        if run.poll() is None:
            run.kill()
            run.wait()


@pytest.mark.timeout(400)
@pytest.mark.parametrize("name", BENCHMARKS)
def test_the_benchmark_runs_at_a_tiny_size(started, name):
    began, run = started[name]
    stdout, stderr = run.communicate(timeout=380)
    seconds = time.monotonic() - began
    assert run.returncode == 0, f"{name} failed after {seconds:.0f} s:\n" \
                                f"{stdout[-3000:]}\n{stderr[-3000:]}"
    assert f"=== {name}:" in stdout
    print(f"{name}: {seconds:.1f} s")
