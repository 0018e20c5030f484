"""The MQTT broker's journal reads back exactly what it still owes, whatever the order of
events, after compaction, and with a torn last record."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ownercare import mqtt_journal
from ownercare.mqtt_journal import Journal, JournalError

CLIENTS = ("bridge-a", "bridge-b")


def owed_by_client(journal: Journal) -> dict[str, list[tuple[str, bytes]]]:
    out: dict[str, list[tuple[str, bytes]]] = {}
    for client, restored in journal.restored().items():
        out[client] = [(t, d) for _p, _j, t, d in restored.in_flight] + [
            (t, d) for _j, t, d in restored.queued]
    return {c: v for c, v in out.items() if v}


ops = st.lists(st.one_of(
    st.tuples(st.just("owe"), st.binary(max_size=40), st.sets(st.sampled_from(CLIENTS),
                                                              min_size=1)),
    st.tuples(st.just("out"), st.integers(0, 30), st.sampled_from(CLIENTS),
              st.integers(1, 65535)),
    st.tuples(st.just("ack"), st.integers(0, 30), st.sampled_from(CLIENTS)),
    st.tuples(st.just("drop"), st.sampled_from(CLIENTS)),
    st.tuples(st.just("reopen"), st.booleans()),
), max_size=60)


@given(ops)
def test_a_reopened_journal_owes_what_a_model_says(steps: list[tuple[Any, ...]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        journal = Journal.open(directory)
        for client in CLIENTS:
            journal.subscribed(client, [("vehicles/#", 1)])
        model: dict[int, tuple[bytes, set[str]]] = {}
        ids: list[int] = []
        for step in steps:
            if step[0] == "owe":
                _, data, clients = step
                payload = journal.owe("vehicles/V/telemetry", data, clients)
                assert payload == data
                ids.append(payload.journal_id)
                model[payload.journal_id] = (bytes(payload), set(clients))
            elif step[0] == "out" and ids:
                _, i, client, packet_id = step
                journal.went_out(ids[int(i) % len(ids)], str(client), int(packet_id))
            elif step[0] == "ack" and ids:
                _, i, client = step
                jid = ids[int(i) % len(ids)]
                journal.acknowledged(jid, str(client))
                if jid in model:
                    model[jid][1].discard(str(client))
            elif step[0] == "drop":
                journal.dropped(str(step[1]))
                for _data, clients in model.values():
                    clients.discard(str(step[1]))
            elif step[0] == "reopen":
                journal.close()
                if step[1]:  # a torn record at the end: a write the kernel never finished
                    with (directory / mqtt_journal.JOURNAL).open("ab") as f:
                        f.write(b"\x00\x00\x01\x00P\x00")
                journal = Journal.open(directory)
        expected: dict[str, list[tuple[str, bytes]]] = {}
        for jid in sorted(model):
            data, clients = model[jid]
            for client in sorted(clients):
                expected.setdefault(client, []).append(("vehicles/V/telemetry", data))
        reopened = Journal.open(directory)
        for j in (journal, reopened):
            got = owed_by_client(j)
            # In flight first, then queued (the order: the next test): as multisets here.
            assert {c: sorted(v) for c, v in got.items()} == \
                {c: sorted(v) for c, v in expected.items()}
        journal.close()
        reopened.close()


def test_in_flight_messages_keep_their_packet_ids_and_the_queue_its_order(
        tmp_path: Path) -> None:
    journal = Journal.open(tmp_path)
    journal.subscribed("bridge", [("vehicles/#", 1)])
    a, b, c = (journal.owe("vehicles/V/telemetry", x, ["bridge"]) for x in (b"a", b"b", b"c"))
    journal.went_out(a.journal_id, "bridge", 7)
    journal.went_out(b.journal_id, "bridge", 8)
    journal.acknowledged(b.journal_id, "bridge")
    journal.close()
    restored = Journal.open(tmp_path).restored()["bridge"]
    assert restored.subscriptions == [("vehicles/#", 1)]
    assert [(p, d) for p, _j, _t, d in restored.in_flight] == [(7, b"a")]
    assert [(j, d) for j, _t, d in restored.queued] == [(c.journal_id, b"c")]


def test_it_compacts_to_what_is_owed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mqtt_journal, "COMPACT_MIN_BYTES", 10_000)
    journal = Journal.open(tmp_path)
    journal.subscribed("bridge", [("vehicles/#", 1)])
    for i in range(2000):
        payload = journal.owe("vehicles/V/telemetry", b"x" * 100, ["bridge"])
        if i < 1990:
            journal.acknowledged(payload.journal_id, "bridge")
    size = (tmp_path / mqtt_journal.JOURNAL).stat().st_size
    assert size < 20_000, size  # ~250 kB written, compacted as it went
    journal.close()
    assert len(Journal.open(tmp_path).restored()["bridge"].queued) == 10


def test_a_record_that_makes_no_sense_is_an_error_not_a_silent_loss(tmp_path: Path) -> None:
    (tmp_path / mqtt_journal.JOURNAL).write_bytes(b"\x00\x00\x00\x02Z\x00")
    with pytest.raises(JournalError, match="not readable"):
        Journal.open(tmp_path)
