"""The view writer (``worker/view_writer.py``): a real spawned child writing a real SQLite
file; durable offsets only after a write; a killed child replaced and fed again from a real
Tansu broker."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import psutil
import pytest
from aiokafka import AIOKafkaProducer

from ingest.contract import encode_batch
from ingest.kafka import ensure_topics, read_range
from storage.store import Store
from tests.diagnostics.test_charging import Charger, normal_session
from tests.stackkit import bootstrap_of
from tests.storage.test_views_store import FL, T0, VIN, sessions, stored_daily, tele
from worker.view_writer import ViewConfig, ViewWriter

pytestmark = pytest.mark.integration

CHARGERS = "chargers-of-this-test"  # any topic but the vehicle topic is the chargers'


def _fl(store: Store) -> tuple[Any, Any] | None:
    vehicle = store.vehicle(VIN)
    signals = {s["path"]: s for s in vehicle["signals"]} if vehicle else {}
    return (signals[FL]["value"], signals[FL]["ts_event_ms"]) if FL in signals else None


def _gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            return True
        time.sleep(0.05)
    return False


def _rename(store: Store, old: str, new: str) -> None:
    """Move a view table away (the next write to it fails) or back."""
    with store.engine.begin() as conn:
        conn.exec_driver_sql(f"ALTER TABLE {old} RENAME TO {new}")


def _unreadable(*_args: Any) -> Any:
    raise AssertionError("nothing should be reread")


def test_records_are_durable_only_once_written(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    store = Store(url)  # the schema, as the worker creates it before its agents start
    writer = ViewWriter(ViewConfig(url, vehicle_topic="vehicles"), _unreadable)

    async def scenario() -> None:
        await writer.start()
        assert writer.pid not in (None, os.getpid())  # a process of its own
        writer.add("vehicles", 3, 10, encode_batch([tele(T0 + 1, **{FL: 250.0})]))
        writer.add("vehicles", 3, 11, encode_batch([tele(T0 + 2, **{FL: 240.0})]))
        writer.add(CHARGERS, 0, 5, encode_batch(normal_session(Charger(), T0)))
        await writer.ship()
        assert writer.durable("vehicles", 3) is None
        assert _fl(store) is None
        writer.add("vehicles", 3, 12, b"not a batch")  # logged and skipped in the child
        await writer.flush(trends=True)
        assert (writer.durable("vehicles", 3), writer.durable(CHARGERS, 0)) == (12, 5)
        assert writer.durable("vehicles", 0) is None

    try:
        asyncio.run(scenario())
    finally:
        writer.close()
    assert writer.pid is not None
    assert _gone(writer.pid)
    assert _fl(store) == (240.0, T0 + 2)
    assert stored_daily(store)[(VIN, "2026-01-01", "tire_pressure_row1_left_kpa")][:3] == (
        2, 240.0, 250.0)
    (session,) = sessions(store).values()
    assert session["end_status"] == "Finishing"


def test_past_its_backlog_bound_the_agent_waits_until_the_records_are_shipped(
        tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    store = Store(url)
    raws = [encode_batch([tele(T0 + i, **{FL: 250.0 - i})]) for i in range(4)]
    bound = len(raws[0]) + len(raws[0]) // 2  # two records cross it
    writer = ViewWriter(ViewConfig(url, vehicle_topic="vehicles"), _unreadable,
                        backlog_bytes=bound)

    async def scenario() -> None:
        await writer.start()
        writer.add("vehicles", 0, 0, raws[0])
        await writer.keep_up()
        assert (writer.waits, writer.gathered_bytes()) == (0, len(raws[0]))
        # A write in progress holds the child, and the worker gathers on: the agent that
        # crosses the bound waits for the write, and returns with its records shipped.
        writing = asyncio.ensure_future(writer.flush())
        await asyncio.sleep(0)  # the write has the child and record 0 now
        writer.add("vehicles", 0, 1, raws[1])
        await writer.keep_up()
        assert not writing.done()
        assert writer.waits == 0
        writer.add("vehicles", 0, 2, raws[2])
        await writer.keep_up()
        assert writing.done()
        assert (writer.waits, writer.gathered_bytes()) == (1, 0)
        assert writer.durable("vehicles", 0) == 0  # the write had record 0 only
        writer.add("vehicles", 0, 3, raws[3])
        await writer.keep_up()
        assert (writer.waits, writer.gathered_bytes()) == (1, len(raws[3]))
        await writer.flush()
        assert writer.durable("vehicles", 0) == 3

    try:
        asyncio.run(scenario())
    finally:
        writer.close()
    assert _fl(store) == (247.0, T0 + 3)


def test_a_backlog_bound_of_nothing_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="backlog must be > 0 bytes, got 0"):
        ViewWriter(ViewConfig(f"sqlite:///{tmp_path / 'db.sqlite'}"), _unreadable,
                   backlog_bytes=0)


async def _publish(bootstrap: str, topic: str, raws: list[bytes]) -> None:
    """``raws`` as the records 0, 1, ... of a new topic's only partition."""
    await ensure_topics(bootstrap, 1, (topic,))
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for raw in raws:
            await producer.send_and_wait(topic, raw, partition=0)
    finally:
        await producer.stop()


def _kafka_fed_writer(kafka_url: str, tmp_path: Path) -> tuple[Store, str, str, ViewWriter]:
    """A store, the broker, a topic of the test's own and a writer that rereads from it."""
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    bootstrap = bootstrap_of(kafka_url)
    topic = f"vehicles-{uuid.uuid4().hex[:8]}"
    writer = ViewWriter(ViewConfig(url, vehicle_topic=topic),
                        lambda t, p, start, end: read_range(bootstrap, t, p, start, end))
    return Store(url), bootstrap, topic, writer


def test_a_killed_child_is_replaced_and_fed_again_from_kafka(kafka_url: str,
                                                            tmp_path: Path) -> None:
    store, bootstrap, topic, writer = _kafka_fed_writer(kafka_url, tmp_path)
    raws = [encode_batch([tele(T0 + i, **{FL: 250.0 - i})]) for i in range(4)]

    async def scenario() -> None:
        await _publish(bootstrap, topic, raws)
        await writer.start()
        writer.add(topic, 0, 0, raws[0])
        await writer.flush(trends=True)  # offset 0 written
        writer.add(topic, 0, 1, raws[1])
        writer.add(topic, 0, 2, raws[2])
        await writer.ship()  # 1 and 2 merged in the child, not written
        first = writer.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        assert _gone(first)
        writer.add(topic, 0, 3, raws[3])
        await writer.flush(trends=True)  # a new child: 1 and 2 read back from Kafka, then 3
        assert writer.pid not in (None, first)
        assert writer.restarts == 1
        assert writer.durable(topic, 0) == 3

    try:
        asyncio.run(scenario())
    finally:
        writer.close()
    assert _fl(store) == (247.0, T0 + 3)
    # Every reading once: 0 from the first child, 1-3 from the second (1 and 2 reread).
    assert stored_daily(store)[(VIN, "2026-01-01", "tire_pressure_row1_left_kpa")][:3] == (
        4, 247.0, 250.0)


def test_a_failed_write_is_retried_with_the_records_read_back(kafka_url: str,
                                                               tmp_path: Path) -> None:
    store, bootstrap, topic, writer = _kafka_fed_writer(kafka_url, tmp_path)
    raws = [encode_batch([tele(T0 + i, **{FL: 250.0 - i})]) for i in range(3)]

    async def scenario() -> None:
        await _publish(bootstrap, topic, raws)
        await writer.start()
        writer.add(topic, 0, 0, raws[0])
        await writer.flush(trends=True)
        _rename(store, "latest_signals", "latest_signals_away")  # the next write fails
        writer.add(topic, 0, 1, raws[1])
        try:
            await writer.flush(trends=True)
        except Exception as exc:
            assert "latest_signals" in str(exc)
        else:
            raise AssertionError("the write should have failed")
        assert writer.durable(topic, 0) == 0
        _rename(store, "latest_signals_away", "latest_signals")
        writer.add(topic, 0, 2, raws[2])
        await writer.flush(trends=True)
        assert writer.durable(topic, 0) == 2

    try:
        asyncio.run(scenario())
    finally:
        writer.close()
    assert _fl(store) == (248.0, T0 + 2)
    # Reading 1 reached the views with the retry (read back from Kafka), reading 0 once.
    (n, low, high) = stored_daily(store)[(VIN, "2026-01-01", "tire_pressure_row1_left_kpa")][:3]
    assert (n, low, high) == (3, 248.0, 250.0)


def test_signal_trends_wait_for_a_trend_flush_and_never_count_a_reading_twice(
        kafka_url: str, tmp_path: Path) -> None:
    store, bootstrap, topic, writer = _kafka_fed_writer(kafka_url, tmp_path)
    raws = [encode_batch([tele(T0 + i, **{FL: 250.0 - i, "Vehicle.Speed": 10.0 + i})])
            for i in range(4)]
    speed = (VIN, "2026-01-01", "Vehicle.Speed")

    async def scenario() -> None:
        await _publish(bootstrap, topic, raws)
        await writer.start()
        writer.add(topic, 0, 0, raws[0])
        await writer.flush(trends=True)
        assert stored_daily(store)[speed][:3] == (1, 10.0, 10.0)
        writer.add(topic, 0, 1, raws[1])
        writer.add(topic, 0, 2, raws[2])
        await writer.flush()  # latest values and named indicators only
        assert _fl(store) == (248.0, T0 + 2)
        assert stored_daily(store)[speed][:3] == (1, 10.0, 10.0)
        assert writer.durable(topic, 0) == 2  # the trends of 1 and 2 are only in the child
        first = writer.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        assert _gone(first)
        writer.add(topic, 0, 3, raws[3])
        await writer.flush(trends=True)  # a new child: only 3 is new to it
        assert writer.durable(topic, 0) == 3

    try:
        asyncio.run(scenario())
    finally:
        writer.close()
    # The trend readings 1 and 2 died with the child (the documented cost of writing trends
    # once a minute); no reading counts twice, and the named indicator has all four.
    assert stored_daily(store)[speed][:4] == (2, 10.0, 13.0, 23.0)
    assert stored_daily(store)[(VIN, "2026-01-01", "tire_pressure_row1_left_kpa")][0] == 4


def test_a_reread_does_not_count_held_signal_trends_twice(kafka_url: str,
                                                         tmp_path: Path) -> None:
    store, bootstrap, topic, writer = _kafka_fed_writer(kafka_url, tmp_path)
    raws = [encode_batch([tele(T0 + i, **{"Vehicle.Speed": 10.0 + i})]) for i in range(3)]

    async def scenario() -> None:
        await _publish(bootstrap, topic, raws)
        await writer.start()
        writer.add(topic, 0, 0, raws[0])
        await writer.flush()  # the trend of 0 stays in the child
        _rename(store, "latest_signals", "latest_signals_away")
        writer.add(topic, 0, 1, raws[1])
        with pytest.raises(Exception, match="latest_signals"):
            await writer.flush()  # fails: 1 is read back, the held trends (0, 1) dropped
        _rename(store, "latest_signals_away", "latest_signals")
        writer.add(topic, 0, 2, raws[2])
        await writer.flush(trends=True)

    try:
        asyncio.run(scenario())
    finally:
        writer.close()
    assert stored_daily(store)[(VIN, "2026-01-01", "Vehicle.Speed")][:4] == (2, 11.0, 12.0,
                                                                            23.0)


def test_the_child_does_not_outlive_a_killed_worker(tmp_path: Path) -> None:
    """A worker killed outright (SIGKILL) cannot shut its pool down: the child exits alone."""
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    Store(url)
    script = (
        "import asyncio, sys\n"
        "from worker.view_writer import ViewConfig, ViewWriter\n"
        "async def main():\n"
        f"    writer = ViewWriter(ViewConfig({url!r}), None)\n"
        "    await writer.start()\n"
        "    print(writer.pid, flush=True)\n"
        "    await asyncio.sleep(600)\n"
        "if __name__ == '__main__':\n"
        "    asyncio.run(main())\n")
    worker = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                              cwd=Path(__file__).parents[2])
    try:
        assert worker.stdout is not None
        child = int(worker.stdout.readline())
        assert psutil.Process(child).ppid() == worker.pid
        worker.kill()
        worker.wait()
        assert _gone(child)
    finally:
        worker.kill()
