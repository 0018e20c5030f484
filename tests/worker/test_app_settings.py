"""The worker's Faust settings come from its own: the stream buffer (in Kafka records) and the
standby replicas; values out of range are refused naming the variable."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from config.settings import WorkerSettings
from worker.agents import create_app


def test_the_stream_buffer_and_the_standbys_are_the_settings(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OWNERCARE_WORKER_BUFFER_RECORDS", "77")
    monkeypatch.setenv("OWNERCARE_WORKER_STANDBY_REPLICAS", "0")
    app = create_app(WorkerSettings(state_dir=tmp_path, kafka_url="kafka://127.0.0.1:9"))
    assert app.conf.stream_buffer_maxsize == 77
    assert app.conf.table_standby_replicas == 0


@pytest.mark.parametrize(("variable", "value", "says"), [
    ("OWNERCARE_WORKER_BUFFER_RECORDS", "2", "greater than or equal to 4"),
    ("OWNERCARE_WORKER_BUFFER_RECORDS", "many", "valid integer"),
    ("OWNERCARE_VIEW_BACKLOG_MIB", "0.5", "greater than or equal to 1"),
    ("OWNERCARE_VIEW_BACKLOG_MIB", "1e6", "less than or equal to 4096"),
    ("OWNERCARE_WORKER_STANDBY_REPLICAS", "-1", "greater than or equal to 0"),
])
def test_a_bound_out_of_range_names_the_setting(variable: str, value: str, says: str,
                                                tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError) as info:
        WorkerSettings(state_dir=tmp_path)
    field = variable.removeprefix("OWNERCARE_").lower()
    assert field in str(info.value)
    assert says in str(info.value)
