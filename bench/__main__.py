"""``make bench``: runs every benchmark module in this folder (or those named)."""
import gc
import importlib
import pkgutil
import sys
from pathlib import Path

import eventlet

eventlet.monkey_patch()


def main(names):
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


if __name__ == "__main__":
    main(sys.argv[1:])
