"""The checkpoint schedule of the worker's tables (worker/checkpoint.py)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from diagnostics.pipeline import position_key, sweep_key
from worker.checkpoint import StagedWrites


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_first_record_of_a_partition_is_written_at_once_then_once_per_interval() -> None:
    clock = Clock()
    staged = StagedWrites(5.0, clock)
    assert staged.stage(0, ["A", position_key(0)])
    assert staged.take(0) == ["A", position_key(0)]
    clock.now += 4.9
    assert not staged.stage(0, ["B", position_key(0)])
    # Partitions keep their own schedule; partition 1's first comes 0.618 of an interval on.
    assert not staged.stage(1, ["C", position_key(1)])
    clock.now += 0.1
    assert staged.stage(0, ["A", position_key(0)])
    assert staged.take(0) == ["B", "A", position_key(0)]
    assert staged.take(0) == []


def test_zero_interval_writes_after_every_record() -> None:
    staged = StagedWrites(0.0, Clock())
    for _ in range(3):
        assert staged.stage(2, ["A", position_key(2)])
        assert staged.take(2) == ["A", position_key(2)]


def test_forgotten_partitions_write_nothing_staged_before() -> None:
    clock = Clock()
    staged = StagedWrites(5.0, clock)
    staged.stage(0, ["A", position_key(0)])
    staged.take(0)
    staged.stage(0, ["B", position_key(0)])
    staged.forget([0])
    assert staged.pending() == 0
    # Owned again later: the first record checkpoints at once, without the old keys.
    assert staged.stage(0, ["C", position_key(0)])
    assert staged.take(0) == ["C", position_key(0)]


def test_a_negative_interval_is_refused() -> None:
    with pytest.raises(ValueError, match="must be >= 0"):
        StagedWrites(-1, Clock())


keys = st.one_of(st.sampled_from(["#position/0", "#sweep/0"]),
                 st.text("ABCDEFGH", min_size=1, max_size=3))


@given(st.lists(st.lists(keys, max_size=6), min_size=1, max_size=20))
def test_a_checkpoint_writes_every_changed_key_once_states_first_position_last(
        records: list[list[str]]) -> None:
    staged = StagedWrites(3600.0, Clock())
    staged.stage(0, [])
    staged.take(0)
    for record in records:
        staged.stage(0, record)
    written = staged.take(0)
    assert sorted(written) == sorted({k for r in records for k in r})
    ranks = [2 if k == position_key(0) else 1 if k == sweep_key(0) else 0 for k in written]
    assert ranks == sorted(ranks)


def test_partitions_that_start_together_checkpoint_apart() -> None:
    clock = Clock()
    staged = StagedWrites(30.0, clock)
    due_at: dict[int, float] = {}
    for tick in range(3001):  # 30 s in steps of 10 ms, every partition busy all the time
        clock.now = 100.0 + tick / 100
        for partition in range(8):
            if partition not in due_at and staged.stage(partition, ["A", position_key(partition)]):
                due_at[partition] = clock.now - 100.0
    assert sorted(due_at) == list(range(8))
    moments = sorted(due_at.values())
    assert moments[0] == 0.0  # partition 0 at its first record
    assert min(b - a for a, b in itertools.pairwise(moments)) >= 1.0  # never two at once


class ChangelogTable:
    """A Faust table's two faces: ``data`` (memory only) and item assignment (memory and a
    changelog record, noted here)."""

    def __init__(self) -> None:
        self.data: dict[str, object] = {}
        self.changelog: list[tuple[str, object]] = []

    def __setitem__(self, key: str, value: object) -> None:
        self.data[key] = value
        self.changelog.append((key, value))


def test_a_capped_position_never_passes_what_is_durable_outside_the_table() -> None:
    from worker.checkpoint import CheckpointedTable

    durable: dict[int, int] = {}
    table = ChangelogTable()
    states = CheckpointedTable(table, 0.0, Clock(), cap=durable.get)
    # Nothing durable outside yet: the states go out, the position waits (stays staged).
    assert states.write(0, {"A": 1, position_key(0): 10}) == 1
    assert table.changelog == [("A", 1)]
    durable[0] = 7
    assert states.write(0, {"B": 2, position_key(0): 11}) == 2
    assert table.changelog[1:] == [("B", 2), (position_key(0), 7)]
    # The detectors' own position stays in memory: catch-up and redelivery read it.
    assert table.data[position_key(0)] == 11
    durable[0] = 20  # durable beyond the detectors: the detectors' position is the bound
    assert states.write(0, {position_key(0): 12}) == 1
    assert table.changelog[-1] == (position_key(0), 12)
