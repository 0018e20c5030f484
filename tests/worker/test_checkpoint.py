"""The checkpoint schedule of the worker's tables (worker/checkpoint.py)."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass

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
    """The parts of a Faust table a CheckpointedTable uses: ``data`` (memory only),
    ``send_changelog`` (a changelog record, noted here with the future Faust returns) and the
    recovery step ``apply_changelog_batch``."""

    def __init__(self) -> None:
        self.data: dict[str, object] = {}
        self.changelog: list[tuple[str, object]] = []
        self.partitions: list[int] = []
        self.futures: list[Sent] = []

    value_serializer = "json"

    def send_changelog(self, partition: int, key: str, value: object,
                       value_serializer: str | None = None) -> Sent:
        # What the record holds: bytes serialized by the caller, or the object as it is when
        # Faust would serialize it later.
        self.changelog.append((key, json.loads(value) if value_serializer == "raw" else value))
        self.partitions.append(partition)
        self.futures.append(Sent(len(self.changelog) - 1))
        return self.futures[-1]

    def apply_changelog_batch(self, batch: list[Recovered]) -> None:
        for event in batch:
            self.data[event.key] = event.value


class Sent:
    """A changelog record's delivery (Faust's FutureMessage): done once acknowledged."""

    def __init__(self, offset: int) -> None:
        self.offset = offset
        self.acknowledged = False
        self.error: Exception | None = None

    def done(self) -> bool:
        return self.acknowledged or self.error is not None

    def exception(self) -> Exception | None:
        return self.error

    def cancelled(self) -> bool:
        return False

    def result(self) -> Sent:
        return self


@dataclass
class Message:
    partition: int


@dataclass
class Recovered:
    key: str
    value: object
    message: Message


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


def recover(table: ChangelogTable, states: object, partition: int,
            items: dict[str, object]) -> None:
    """What Faust's recovery does: the table's apply step with the changelog's records."""
    table.apply_changelog_batch([Recovered(k, v, Message(partition)) for k, v in items.items()])


def test_a_refresh_rewrites_every_key_held_for_the_partition_and_marks_its_first_record(
) -> None:
    from worker.checkpoint import CheckpointedTable

    clock = Clock()
    table = ChangelogTable()
    states = CheckpointedTable(table, 0.0, clock, refresh_s=60.0)
    recover(table, states, 0, {"OLD": 1, position_key(0): 5})
    recover(table, states, 1, {"OTHER": 2})
    # Partition 0 refreshes at its first checkpoint: the recovered and the written keys, states
    # first, its position last; partition 1's key is not its to write.
    assert states.write(0, {"A": 3, position_key(0): 6}) == 3
    assert table.changelog == [("A", 3), ("OLD", 1), (position_key(0), 6)]
    assert set(table.partitions) == {0}
    assert states.refreshed() == {}  # nothing acknowledged yet
    table.futures[0].acknowledged = True
    assert states.refreshed() == {}  # the last record could still be lost
    table.futures[2].acknowledged = True
    assert states.refreshed() == {0: 0}
    # Until the next refresh, checkpoints send only what changed.
    clock.now += 59
    assert states.write(0, {"A": 4, position_key(0): 7}) == 2
    clock.now += 1
    assert states.write(0, {position_key(0): 8}) == 3
    for sent in table.futures:
        sent.acknowledged = True
    assert states.refreshed() == {0: 5}


def test_a_refresh_that_cannot_write_the_position_marks_nothing() -> None:
    from worker.checkpoint import CheckpointedTable

    table = ChangelogTable()
    states = CheckpointedTable(table, 0.0, Clock(), cap=lambda _p: None, refresh_s=60.0)
    states.write(0, {"A": 1, position_key(0): 5})
    for sent in table.futures:
        sent.acknowledged = True
    assert table.changelog == [("A", 1)]
    assert states.refreshed() == {}


def test_a_failed_or_forgotten_refresh_marks_nothing() -> None:
    from worker.checkpoint import CheckpointedTable

    table = ChangelogTable()
    states = CheckpointedTable(table, 0.0, Clock(), refresh_s=60.0)
    states.write(0, {"A": 1, position_key(0): 5})
    table.futures[0].error = RuntimeError("broker away")
    table.futures[1].acknowledged = True
    assert states.refreshed() == {}
    table.futures[0].error = None
    table.futures[0].acknowledged = True
    assert states.refreshed() == {}  # dropped: the next refresh marks anew
    states.write(1, {"B": 1, position_key(1): 5})
    states.forget([1])
    for sent in table.futures:
        sent.acknowledged = True
    assert states.refreshed() == {}


def test_a_negative_refresh_interval_is_refused() -> None:
    from worker.checkpoint import CheckpointedTable

    with pytest.raises(ValueError, match="refresh interval must be >= 0"):
        CheckpointedTable(ChangelogTable(), 1.0, Clock(), refresh_s=-1)


write_steps = st.lists(
    st.tuples(st.integers(0, 2),  # partition
              st.dictionaries(st.sampled_from(["A", "B", "C", "D"]), st.integers(0, 99),
                              max_size=3),
              st.floats(0, 40)),  # seconds until the write
    min_size=1, max_size=40)


@given(write_steps, st.sampled_from([0.0, 5.0, 30.0]), st.floats(10, 120))
def test_the_changelog_from_a_mark_on_holds_every_keys_newest_value(
        steps: list[tuple[int, dict[str, int], float]], every_s: float, refresh_s: float) -> None:
    """Trimming a partition's changelog below its mark loses nothing: replayed from the
    mark, it gives every key the value a replay from the start gives."""
    from worker.checkpoint import CheckpointedTable

    clock = Clock()
    table = ChangelogTable()
    states = CheckpointedTable(table, every_s, clock, refresh_s=refresh_s)
    recover(table, states, 0, {"R": -1})
    # Recovered records are the changelog's first ones (offset -1: before any sent here).
    for partition, writes, wait in steps:
        clock.now += wait
        # Each source partition has its own keys, as a vehicle's states follow its partition.
        states.write(partition, {f"{partition}:{k}": v for k, v in writes.items()}
                     | {position_key(partition): int(clock.now)})
        for sent in table.futures:
            sent.acknowledged = True
        for partition_marked, mark in states.refreshed().items():
            full: dict[str, object] = {"R": -1} if partition_marked == 0 else {}
            tail: dict[str, object] = {}
            for offset, ((key, value), p) in enumerate(zip(table.changelog, table.partitions,
                                                           strict=True)):
                if p != partition_marked:
                    continue
                full[key] = value
                if offset >= mark:
                    tail[key] = value
            assert tail == full


def test_a_checkpoint_sends_the_state_as_it_was_not_as_it_becomes() -> None:
    """Faust serializes a changelog value only when its producer buffer drains; the detectors
    change their state dicts in place meanwhile."""
    from worker.checkpoint import CheckpointedTable

    table = ChangelogTable()
    states = CheckpointedTable(table, 0.0, Clock())
    state = {"seq": 1}
    states.write(0, {"A": state, position_key(0): 5})
    state["seq"] = 2  # the next record, before the producer sent the checkpoint
    assert table.changelog[0] == ("A", {"seq": 1})


def test_a_revoked_partition_leaves_memory_and_comes_back_from_the_changelog_alone() -> None:
    """A rebalance revokes every partition and hands some back; Faust then recovers a kept
    partition over what the worker holds. Forgetting the partition's keys means the table
    after that recovery is exactly a prefix of the changelog: never a recovered state beside
    a newer in-memory position that claims records the state lacks."""
    from worker.checkpoint import CheckpointedTable

    table = ChangelogTable()
    states = CheckpointedTable(table, 5.0, Clock())
    states.write(0, {"A": {"ts": 1}, position_key(0): 1})  # first record: checkpointed
    states.write(1, {"B": {"ts": 1}, position_key(1): 1})
    checkpointed = list(zip(table.changelog, table.partitions, strict=True))
    states.write(0, {"A": {"ts": 2}, "C": {"ts": 2}, position_key(0): 2})  # staged only
    states.forget([0])
    assert set(table.data) == {"B", position_key(1)}  # partition 1 untouched
    table.apply_changelog_batch([Recovered(key, value, Message(partition))
                                 for (key, value), partition in checkpointed
                                 if partition == 0])
    assert table.data == {"A": {"ts": 1}, position_key(0): 1, "B": {"ts": 1},
                          position_key(1): 1}
    # Nothing staged before the revocation is written later.
    states.write(0, {"D": {"ts": 3}, position_key(0): 3})
    assert [key for key, _ in table.changelog[len(checkpointed):]] in ([], ["D", position_key(0)])
    assert "C" not in [key for key, _ in table.changelog]
