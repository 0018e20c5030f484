"""A scenario's messages as canonical records, the simulator optionally in a child process.

With two processes the simulator runs in a child that also validates whenever detecting is
the bottleneck, so simulating, validating and detecting share both cores. The records and
their order are the same either way: validation is pure, and the pipe keeps the order.
"""

from __future__ import annotations

import multiprocessing
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ingest.contract import validate
from ownercare.evaluation.scenario import Message, Scenario, raw_stream

BATCH = 1000  # messages per pipe transfer from the simulator process


def _produce(scenario: Scenario, record: Path | None, conn: Any, done: Any
             ) -> None:  # pragma: no cover - runs in the child process
    """Child process: simulate and send batches ``(validated, items)``; None ends.

    Work balancing: when the detectors are still busy with an earlier batch (``done``, a
    shared counter, is behind what was sent), detecting is the bottleneck, so this process
    validates the batch too; otherwise the parent is idle and gets the raw messages to
    validate. (A batch outgrows the pipe's buffer, so ``send`` returns only once the parent
    is reading it: "received" would always look caught up, "finished" does not.)
    Validation is pure, so where it runs changes nothing in the records.
    """
    batch: list[Message] = []
    sent = 0

    def send() -> None:
        nonlocal sent
        if done.value < sent:
            conn.send((True, [validate(topic, payload) for topic, payload in batch]))
        else:
            conn.send((False, batch))
        sent += 1

    for message in raw_stream(scenario, record):
        batch.append(message)
        if len(batch) >= BATCH:
            send()
            batch = []
    send()
    conn.send(None)
    conn.close()


def simulated_records(scenario: Scenario, processes: int = 2, record: Path | None = None
                      ) -> Iterator[dict[str, Any]]:
    """The scenario's messages as canonical records (``ingest.contract.validate``, as the
    bridge does); ``record``: see :func:`~ownercare.evaluation.scenario.raw_stream`. With
    ``processes=2`` the simulator runs in a child process (see the module docstring)."""
    if processes < 2:
        for topic, payload in raw_stream(scenario, record):
            yield validate(topic, payload)
        return
    context: Any = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
    receiver, sender = context.Pipe(duplex=False)
    done = context.Value("q", 0, lock=False)  # batches the detectors have finished
    child = context.Process(target=_produce, args=(scenario, record, sender, done),
                            daemon=True)
    child.start()
    sender.close()
    try:
        while (item := receiver.recv()) is not None:
            validated, batch = item
            if validated:
                yield from batch
            else:
                for topic, payload in batch:
                    yield validate(topic, payload)
            done.value += 1
    finally:
        receiver.close()
        child.join(timeout=5)
        if child.is_alive():
            child.terminate()
            child.join()
    if child.exitcode not in (0, None):
        raise RuntimeError(f"the simulator process failed (exit code {child.exitcode})")
