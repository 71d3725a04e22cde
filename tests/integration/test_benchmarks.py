"""Every benchmark runs: each bench/bench_*.py as ``make bench`` runs it (``python -m bench``,
a platform of its own in a throwaway vhost), at a size of seconds, so that none can break
unnoticed. Its figures mean nothing at this size; that every step ran does. A failed request
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
    # registry search and campaign
    "BENCH_POINTS": "20",
    "BENCH_SEARCH_REQUESTS": "12",
    # campaign: at least one order per municipality of the sample
    "BENCH_CAMPAIGN_ORDERS": "12",
    "BENCH_CAMPAIGN_PRINT_RUN": "200",
    # declaration check
    "BENCH_CHECK_SIZES": "6,12",
    "BENCH_CHECK_REQUESTS": "12",
    # travel claims
    "BENCH_TRAVEL_CLAIMS": "8",
    "BENCH_TRAVEL_CAREGIVERS": "4",
    "BENCH_TRAVEL_LARGE_BATCH": "16",
}


def test_every_benchmark_module_is_run_here():
    assert BENCHMARKS == ["bench_campaign", "bench_declaration_check", "bench_registry_search",
                          "bench_travel_claims"]


@pytest.mark.timeout(240)
@pytest.mark.parametrize("name", BENCHMARKS)
def test_the_benchmark_runs_at_a_tiny_size(name):
    started = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "bench", name], cwd=ROOT,
                         env={**os.environ, **TINY, "PYTHONWARNINGS": "ignore"},
                         capture_output=True, text=True, timeout=230)
    seconds = time.monotonic() - started
    assert run.returncode == 0, f"{name} failed after {seconds:.0f} s:\n" \
                                f"{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    assert f"=== {name}:" in run.stdout
    print(f"{name}: {seconds:.1f} s")
