"""Joint scoring (diagnostics.joint): a value judged against the signals that explain it."""

from __future__ import annotations

import json
import math
import random

import pytest

from diagnostics.generic import GenericScorer
from diagnostics.joint import JointScorer

T0 = 1_767_225_600_000
FIVE_MIN = 300_000
HISTORY = 288 * 20  # twenty days


def drive(n: int, seed: int) -> list[tuple[int, list[float]]]:
    """Coolant temperature explained by motor power and air temperature (plus noise)."""
    rng = random.Random(seed)
    weather, rows = 0.0, []
    for i in range(n):
        weather = max(-8.0, min(8.0, weather + rng.gauss(0, 0.15)))
        air = 5.0 + 6.0 * math.sin(2 * math.pi * i / 288) + weather
        power = max(0.0, 30.0 + 25.0 * math.sin(i / 23.0) + rng.gauss(0, 5))
        coolant = 30.0 + 0.5 * power + 0.8 * air + rng.gauss(0, 0.5)
        rows.append((T0 + i * FIVE_MIN, [coolant, power, air]))
    return rows


def run(rows: list[tuple[int, list[float]]]) -> tuple[list[float], list[float]]:
    joint, alone = JointScorer(3), GenericScorer()
    js, gs = joint.new_state(), alone.new_state()
    return ([joint.score_one(js, t, v) for t, v in rows],
            [alone.score_one(gs, t, v[0]) for t, v in rows])


def test_a_cold_snap_the_air_explains_is_not_an_anomaly() -> None:
    rows = drive(HISTORY, seed=1)
    rng = random.Random(2)
    t = rows[-1][0]
    for i in range(1, 13):  # an hour of a deep cold snap, coolant following the air
        air, power = -30.0, 30.0
        rows.append((t + i * FIVE_MIN,
                     [30.0 + 0.5 * power + 0.8 * air + rng.gauss(0, 0.5), power, air]))
    joint, alone = run(rows)
    assert max(alone[HISTORY:]) >= 0.5  # far below anything the coolant has done
    assert max(joint[HISTORY:]) < 0.5  # but just what the air explains


def test_a_coolant_reading_normal_alone_but_wrong_for_the_load_is_an_anomaly() -> None:
    rows = drive(HISTORY, seed=3)
    t = rows[-1][0]
    for i in range(1, 13):  # full power, yet the coolant sits at its everyday level
        rows.append((t + i * FIVE_MIN, [49.0, 60.0, 5.0]))
    joint, alone = run(rows)
    assert max(alone[HISTORY:]) < 0.5
    assert max(joint[HISTORY:]) >= 0.9


def test_one_signal_is_the_generic_score_and_state_round_trips() -> None:
    rows = drive(800, seed=4)
    single, plain = JointScorer(1), GenericScorer()
    ss, ps = single.new_state(), plain.new_state()
    assert ([single.score_one(ss, t, v[:1]) for t, v in rows]
            == [plain.score_one(ps, t, v[0]) for t, v in rows])
    joint = JointScorer(3)
    straight_state = joint.new_state()
    straight = [joint.score_one(straight_state, t, v) for t, v in rows]
    state = joint.new_state()
    resumed = [joint.score_one(state, t, v) for t, v in rows[:400]]
    state = json.loads(json.dumps(state))
    resumed += [joint.score_one(state, t, v) for t, v in rows[400:]]
    assert resumed == straight


def test_rejects_a_row_of_the_wrong_width() -> None:
    joint = JointScorer(2)
    with pytest.raises(ValueError, match="expected 2 values"):
        joint.score_one(joint.new_state(), T0, [1.0])
