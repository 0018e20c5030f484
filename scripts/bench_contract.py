"""Time the bridge's contract validation on the load generator's payloads.

    .venv/bin/python scripts/bench_contract.py [--vehicles 10000] [--ticks 2] [--module PATH]

Builds the telemetry messages ``ownercare bench`` publishes (``simulators.load``) for
``--vehicles`` cars and ``--ticks`` ticks, then validates all of them five times and prints
the best per-message CPU time. ``--module`` times another copy of ``ingest/contract.py`` (e.g. the
previous release's) on the same payloads, so before/after figures come from one run.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path
from types import ModuleType

from simulators.load import DrivingFleet, bench_vins


def load(path: Path | None) -> ModuleType:
    if path is None:
        from ingest import contract
        return contract
    spec = importlib.util.spec_from_file_location("contract_under_test", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--vehicles", type=int, default=10_000)
    parser.add_argument("--ticks", type=int, default=2)
    parser.add_argument("--module", type=Path, action="append")
    args = parser.parse_args()
    fleet = DrivingFleet(bench_vins(args.vehicles))
    messages = []
    for t in range(args.ticks):
        columns = fleet.tick(1.0)
        messages += list(fleet.payloads(columns, range(args.vehicles), 1_767_225_600_000 + t))
    for path in args.module or [None]:
        contract = load(path)
        best = float("inf")
        for _ in range(5):
            start = time.process_time()
            for topic, payload in messages:
                contract.validate(topic, payload)
            best = min(best, time.process_time() - start)
        name = path or "ingest/contract.py"
        sys.stdout.write(f"{name}: {best / len(messages) * 1e6:.2f} us/message "
                         f"({len(messages)} messages, best of 5, CPU time)\n")


if __name__ == "__main__":
    main()
