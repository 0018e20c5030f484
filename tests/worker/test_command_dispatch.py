"""The leader worker's side of remote commands: it signs exactly what was requested, in a
form the car accepts, and expires what the fleet's event time has passed."""

from __future__ import annotations

from pathlib import Path

import orjson

from care import commands as policy
from care.signing import generate_keypair, load_private_key, load_public_key
from storage import commands as command_store
from storage.store import Store
from worker.command_dispatch import CommandDispatcher

VIN = "WCRAAAAAAAAAAAAA1"
T0 = 1_767_225_600_000


def test_requested_commands_are_signed_for_their_car_and_stale_ones_expire(tmp_path: Path
                                                                           ) -> None:
    private_pem, public_pem = generate_keypair()
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    store.upsert_signals([("vehicle", VIN, "Vehicle.Speed", 0.0, T0)])
    command_store.request_command(store, vin=VIN, kind="snapshot", actor="ann", key_id="k",
                                  command_id="s-1")
    dispatcher = CommandDispatcher(store, load_private_key(private_pem))
    ((command_id, vin, raw),) = dispatcher.step()
    assert (command_id, vin) == ("s-1", VIN)
    got = policy.verify_command(load_public_key(public_pem), orjson.loads(raw), vin=VIN,
                                now=T0 + 1, seen_nonces=set())
    assert (got.id, got.kind, got.issued_at, got.expires_at) == (
        "s-1", "snapshot", T0, T0 + policy.DEFAULT_TTL_MS)
    # Not marked sent until Kafka has it: the next tick offers it again, same nonce.
    ((_, _, again),) = dispatcher.step()
    assert orjson.loads(again)["command"]["nonce"] == got.nonce
    command_store.mark_sent(store, ["s-1"])
    assert dispatcher.step() == []
    store.upsert_signals([("vehicle", VIN, "Vehicle.Speed", 0.0,
                           T0 + policy.DEFAULT_TTL_MS + 1)])
    assert command_store.expiry_due(store)
    dispatcher.step()
    assert command_store.get_command(store, "s-1")["state"] == "expired"  # type: ignore[index]
