"""The console benchmark end to end at a small size: it seeds, serves, signs in and times."""

from __future__ import annotations

import pytest

from ownercare import console_bench

pytestmark = pytest.mark.integration


def test_the_console_bench_times_every_page(capsys: pytest.CaptureFixture[str]) -> None:
    assert console_bench.main(["--vehicles", "30", "--alerts", "120", "--rounds", "2"]) == 0
    out = capsys.readouterr().out
    assert "seeded 30 vehicles, 120 alerts, 60 cases (10 open)" in out
    for page in ("queue", "vehicle card", "case detail", "fleet overview"):
        line = next(ln for ln in out.splitlines() if ln.startswith(page + " "))
        assert line.count("ms") == 3
        assert line.endswith("KB")


def test_the_console_bench_refuses_empty_sizes(capsys: pytest.CaptureFixture[str]) -> None:
    assert console_bench.main(["--vehicles", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "console_bench: --vehicles, --alerts and --rounds must be at least 1"
