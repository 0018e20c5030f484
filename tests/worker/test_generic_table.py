"""The generic detector's table restores a changelog only up to the last position record of
each partition: a changelog cut anywhere gives the table of its last whole checkpoint
(worker/generic.py, ``VouchedTable``)."""

from __future__ import annotations

from typing import Any

import faust
from faust.events import Event
from faust.types.tuples import Message
from hypothesis import given
from hypothesis import strategies as st

from worker.generic import VouchedTable

KEYS = ("WCRGE1B54PA241856", "WCRGE1B54PA241856|Vehicle.Speed", "#fleet/0|Vehicle.Speed")


def table() -> VouchedTable:
    app = faust.App("vouched-table-test", broker="kafka://127.0.0.1:1", store="memory://")
    return VouchedTable(app, name="generic-diagnostics", default=None,
                        beacon=app.tables.beacon, partitions=2,
                        schema=faust.Schema(key_serializer="json", value_serializer="json"))


def event(app: Any, partition: int, offset: int, key: str, value: Any) -> Event:
    message = Message("changelog", partition, offset, 0.0, 0, {}, key.encode(), b"{}", None)
    return Event(app, key, value, {}, message)


# Checkpoints of partition 0: the states each one writes (the position follows them).
checkpoints = st.lists(st.dictionaries(st.sampled_from(KEYS), st.integers(0, 99), min_size=1),
                       min_size=1, max_size=5)


@given(checkpoints, st.data())
def test_a_changelog_cut_anywhere_restores_its_last_whole_checkpoint(
    written: list[dict[str, int]], data: st.DataObject
) -> None:
    records: list[tuple[str, Any]] = []
    for position, states in enumerate(written):
        records += [*states.items(), ("#position/0", position)]
    cut = data.draw(st.integers(0, len(records)), label="cut")
    split = data.draw(st.integers(0, cut), label="batch split")
    t = table()
    events = [event(t.app, 0, i, k, v) for i, (k, v) in enumerate(records[:cut])]
    # Another partition's records, unvouched, never come in; batches may split anywhere.
    t.apply_changelog_batch([*events[:split], event(t.app, 1, 0, "other", 1)])
    t.apply_changelog_batch(events[split:])
    whole = sum(1 for k, _ in records[:cut] if k == "#position/0")
    expected: dict[str, Any] = {}
    for position, states in enumerate(written[:whole]):
        expected.update(states)
        expected["#position/0"] = position
    assert dict(t.data) == expected
