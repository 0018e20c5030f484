"""The worker's memory bounds come from its settings: Faust's stream buffer (in Kafka records)
and the view writer's backlog; values that would leave memory unbounded or stall are refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from config.settings import WorkerSettings
from worker.agents import create_app


def test_the_agents_stream_buffer_is_the_setting(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OWNERCARE_WORKER_BUFFER_RECORDS", "77")
    app = create_app(WorkerSettings(state_dir=tmp_path, kafka_url="kafka://127.0.0.1:9"))
    assert app.conf.stream_buffer_maxsize == 77


@pytest.mark.parametrize(("variable", "value", "says"), [
    ("OWNERCARE_WORKER_BUFFER_RECORDS", "2", "greater than or equal to 4"),
    ("OWNERCARE_WORKER_BUFFER_RECORDS", "many", "valid integer"),
    ("OWNERCARE_VIEW_BACKLOG_MIB", "0.5", "greater than or equal to 1"),
    ("OWNERCARE_VIEW_BACKLOG_MIB", "1e6", "less than or equal to 4096"),
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
