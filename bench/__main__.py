"""``make bench``: runs every benchmark module in this folder (or those named). Exits 1
when a request failed or a benchmark found its results wrong (see bench/harness.py)."""
import gc
import importlib
import pkgutil
import sys
from pathlib import Path

import eventlet

eventlet.monkey_patch()


def main(names):
    from bench.harness import PROBLEMS
    from common.logging import quiet_libraries

    quiet_libraries()
    folder = Path(__file__).parent
    found = sorted(m.name for m in pkgutil.iter_modules([str(folder)])
                   if m.name.startswith("bench_"))
    for name in names or found:
        # "declaration_check" and "bench_declaration_check" both name bench_declaration_check.py
        name = name if name.startswith("bench_") else f"bench_{name}"
        module = importlib.import_module(f"bench.{name}")
        # The load generator freezes its heap as the services do, so that its own full
        # collections do not show up as the platform's latency.
        gc.collect()
        gc.freeze()
        print(f"=== {name}: {module.__doc__.strip().splitlines()[0]}")
        module.run()
    for text in PROBLEMS:
        print(f"problem: {text}", file=sys.stderr)
    return 1 if PROBLEMS else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
