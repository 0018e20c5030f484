"""What every simulated device yields: a stream of ``(ts_ms, topic, payload)`` messages.

Why it matters
--------------
The fleet is many devices, each a generator walking its own timeline; ``heapq.merge`` in
``simulators.fleet`` interleaves them by ``ts``. The merge can only do that if every device's
stream is non-decreasing in ``ts`` and ends when the device stops (a stream that merely stops
yielding would keep the merge waiting on it forever).

Rules
-----
* ``Message`` is ``(ts, topic, payload)``: event time in epoch milliseconds, the contract's
  MQTT topic, the JSON payload as bytes.
* ``NEVER`` is a time after any run: "not scheduled" for a deadline, ``-NEVER`` "long ago".
* Faults ``silent`` / ``charger_silent`` end the device's stream at the onset (``silenced``):
  the asset keeps living, only its messages stop.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import takewhile

from simulators.faults import FaultInstance

Message = tuple[int, str, bytes]
NEVER = 2**62


def silenced(fault: FaultInstance | None, stream: Iterator[Message]) -> Iterator[Message]:
    """Faults ``silent`` / ``charger_silent``: nothing from the onset on. The stream must end
    (not just stop yielding), or the merge of all devices would wait on it forever."""
    if fault is None or fault.name not in ("silent", "charger_silent"):
        return stream
    return takewhile(lambda m: m[0] < fault.onset_ts, stream)
