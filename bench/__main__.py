"""Run the benchmarks: ``python -m bench [NAME ...]`` (``make bench`` runs them all), or one with
its options: ``python -m bench NAME [OPTIONS]`` (e.g. ``python -m bench edge --rounds 3``).

Each ``bench/bench_<name>.py`` has ``main(argv: list[str]) -> int`` and prints its figures with a
ratio against a baseline measured in the same run. The ones in ``ON_REQUEST`` run only when named
(``fleet``: 1,000 lab devices and Nornir's kept-session rounds take about 40 minutes).
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
import sys
from pathlib import Path


ON_REQUEST = {"fleet"}


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for noisy in ("asyncssh", "gateway.api.interceptors"):  # per-connection / per-call lines
        logging.getLogger(noisy).setLevel(logging.WARNING)
    here = Path(__file__).parent
    names = sorted(m.name[len("bench_"):] for m in pkgutil.iter_modules([str(here)]) if m.name.startswith("bench_"))
    split = next((i for i, a in enumerate(argv) if a.startswith("-")), len(argv))
    wanted, options = argv[:split] or [n for n in names if n not in ON_REQUEST], argv[split:]
    if options and len(wanted) != 1:
        logging.error("options (%s) go to one benchmark: python -m bench NAME [OPTIONS]", " ".join(options))
        return 2
    status = 0
    for name in wanted:
        if name not in names:
            logging.error("no benchmark %r; have: %s", name, ", ".join(names))
            return 2
        module = importlib.import_module(f"bench.bench_{name}")
        status |= module.main(options)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
