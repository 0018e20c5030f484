"""The OTA timer's timing against a real SQLite store (``OtaRunner.step_due``): a step when
the fleet's event time has moved on by the step interval or an operator changed a campaign,
never for the wall clock's sake; and an offer whose car has not been heard from since is not
expired however far the fleet's clock ran."""

from __future__ import annotations

from pathlib import Path

from ota.manifest import generate_keypair, load_private_key
from ota.model import ActionState, Campaign, CampaignStatus, Targets
from simulators.ota_client import simulated_release
from storage import ota as ota_store
from storage.store import Store
from worker.ota_runner import OtaRunner

HOUR = 3_600_000
T0 = 1_767_571_200_000 + 2 * HOUR  # 02:00 UTC
VINS = ["WCRAAAAAAAAAA0001", "WCRAAAAAAAAAA0002"]
PRIVATE_PEM, _ = generate_keypair()


def parked(store: Store, ts: int, vins: list[str] = VINS) -> None:
    signals = {"Vehicle.VehicleIdentification.Model": "Volt", "Vehicle.Speed": 0.0,
               "Vehicle.LowVoltageSystemState": "OFF",
               "Vehicle.Powertrain.TractionBattery.StateOfCharge.Current": 80.0,
               "Vehicle.LowVoltageBattery.CurrentVoltage": 12.6}
    store.upsert_signals([("vehicle", vin, path, value, ts) for vin in vins
                          for path, value in signals.items()])


def started_campaign(store: Store) -> str:
    release = simulated_release("2.0.0", "bms", "https://cdn.example/bms-2.0.0.bin")
    row = ota_store.create_release(store, release, created_by="test", now_ms=T0)
    campaign = Campaign("0c8f4b1e-1111-4222-8333-444455556666", release,
                        targets=Targets(vins=frozenset(VINS)))
    ota_store.create_campaign(store, campaign, name="bms", release_id=row["id"],
                              created_by="test", now_ms=T0)
    ota_store.start_campaign(store, campaign.id, T0)
    return campaign.id


def test_steps_follow_the_fleet_s_event_time_and_operator_changes(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'ota.sqlite'}")
    runner = OtaRunner(store, load_private_key(PRIVATE_PEM), step_s=10)
    assert not runner.step_due(None)  # no campaign, no fleet
    parked(store, T0)
    assert not runner.step_due(T0)  # no campaign to step
    campaign_id = started_campaign(store)
    assert runner.step_due(None)  # started: at once, on the store's fleet time
    assert not runner.step_due(T0 + 9_999)  # however much wall time passes meanwhile
    assert runner.step_due(T0 + 10_000)
    ota_store.change_status(store, campaign_id, CampaignStatus.PAUSED, T0 + 10_000, "hold")
    assert not runner.step_due(T0 + 10_001)  # nothing left to step
    ota_store.change_status(store, campaign_id, CampaignStatus.RUNNING, T0 + 10_000, "go")
    assert runner.step_due(T0 + 10_001)  # resumed: at once
    ota_store.change_status(store, campaign_id, CampaignStatus.CANCELED, T0 + 10_000, "stop")
    assert runner.step_due(T0 + 10_002)  # canceled: the cars must be told at once
    store.close()


def test_an_offer_outlives_a_fleet_clock_that_ran_ahead_of_the_car(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'ota.sqlite'}")
    runner = OtaRunner(store, load_private_key(PRIVATE_PEM))
    parked(store, T0)
    campaign_id = started_campaign(store)
    assert [vin for vin, _ in runner.step_all()]  # the canary is offered the update
    (canary,) = [vin for vin, a in ota_store.load_actions(store, campaign_id).items()
                 if a.state is ActionState.OFFERED]
    other = next(v for v in VINS if v != canary)
    parked(store, T0 + 3 * HOUR, [other])  # the fleet's clock: 3 h on; the canary: silent
    runner.step_all()
    assert ota_store.load_actions(store, campaign_id)[canary].state is ActionState.OFFERED
    parked(store, T0 + HOUR + 1, [canary])  # the canary, past the 1 h expiry, no answer
    runner.step_all()
    action = ota_store.load_actions(store, campaign_id)[canary]
    assert (action.state, action.attempt) == (ActionState.SCHEDULED, 2)
    store.close()
