"""The production Mosquitto ACL for remote support commands: the bridge writes a car's
``commands``, only that car reads them, and only that car writes its ``commands/result``."""

from __future__ import annotations

import time

import pytest

from tests.deploy.test_deploy_mosquitto import Broker, Client, broker, vins, wait_for

pytestmark = pytest.mark.integration
__all__ = ["broker", "vins"]  # the fixtures, shared with the other ACL tests


def test_only_the_bridge_sends_a_car_its_commands_and_only_that_car_reads_them(
        broker: Broker, vins: tuple[str, str]) -> None:
    a, b = vins
    car_a, car_b = Client(broker, a), Client(broker, b)
    assert car_a.wait_connected()
    assert car_b.wait_connected()
    car_a.subscribe(f"vehicles/{a}/commands")
    car_b.subscribe("vehicles/#")
    car_b.publish(f"vehicles/{a}/commands", b"forged by B")
    bridge = Client(broker, "ownercare-bridge")
    assert bridge.wait_connected()
    bridge.publish(f"vehicles/{a}/commands", b"battery test for A")
    assert wait_for(lambda: (f"vehicles/{a}/commands", b"battery test for A")
                    in car_a.messages)
    time.sleep(0.3)
    assert car_a.messages == [(f"vehicles/{a}/commands", b"battery test for A")]
    assert car_b.messages == []
    for c in (bridge, car_a, car_b):
        c.close()


def test_a_car_reports_results_only_as_itself(broker: Broker, vins: tuple[str, str]) -> None:
    a, b = vins
    bridge = Client(broker, "ownercare-bridge")
    assert bridge.wait_connected()
    bridge.subscribe("vehicles/#")
    car_a = Client(broker, a)
    assert car_a.wait_connected()
    car_a.publish(f"vehicles/{b}/commands/result", b"pretending to be B")
    car_a.publish(f"vehicles/{a}/commands/result", b"honest")
    assert wait_for(lambda: (f"vehicles/{a}/commands/result", b"honest") in bridge.messages)
    time.sleep(0.3)
    assert bridge.messages == [(f"vehicles/{a}/commands/result", b"honest")]
    for c in (bridge, car_a):
        c.close()
