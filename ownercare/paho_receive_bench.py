"""CPU per received message of the bridge's MQTT side: stock paho against ``BatchedIoClient``.

``python -m ownercare.paho_receive_bench [--vehicles N] [--ticks T] [--rounds R]`` starts a
private Mosquitto (Debian's package), queues N x T bench telemetry messages at QoS 1 for a
persistent session while its subscriber is away, then lets the subscriber reconnect and drain
them the way the bridge does (``manual_ack``; acknowledgements handed back every 50 ms, one
``ack`` per message for stock paho, ``ack_many`` for the batched client). It prints the
subscriber process's CPU microseconds per message and the drain rate, alternating the two
clients R times. Only the MQTT side is measured: no validation, no Kafka.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from ingest.mqtt import make_client
from ownercare import embedded
from simulators.load import DrivingFleet, LeanPublisher, bench_vins

CONF = """\
listener {port} 127.0.0.1
allow_anonymous true
persistence false
max_queued_messages 0
max_inflight_messages 0
"""


def drain_once(url: str, messages: list[tuple[str, bytes]], batched: bool,
               round_no: int) -> dict[str, Any]:
    # A fresh session per drain: a session of an earlier round would bring its leftovers.
    client, connect = make_client(url, f"receive-bench-{batched}-{round_no}", persistent=True,
                                  manual_ack=True, batched_io=batched)
    received: list[tuple[int, int]] = []
    lock = threading.Lock()
    subscribed = threading.Event()
    client.on_connect = lambda c, *_a: c.subscribe("vehicles/#", 1)
    client.on_subscribe = lambda *_a: subscribed.set()

    def on_message(_c: Any, _u: Any, msg: Any) -> None:
        with lock:
            received.append((msg.mid, msg.qos))

    client.on_message = on_message
    client.connect(**connect)
    client.loop_start()
    if not subscribed.wait(10):
        raise SystemExit("paho_receive_bench: the subscription was not acknowledged")
    client.disconnect()  # the session stays: the broker queues everything published now
    client.loop_stop()
    publisher = LeanPublisher(url, "receive-bench-pub", 1, max_in_flight=2000)
    for topic, payload in messages:
        publisher.publish(topic, payload)
    publisher.flush()
    if not publisher.wait_acked(120):
        raise SystemExit("paho_receive_bench: the broker did not acknowledge every publish")
    publisher.close()

    client.connect(**connect)
    cpu0, wall0 = time.process_time(), time.monotonic()
    client.loop_start()
    done = 0
    while done < len(messages) and time.monotonic() - wall0 < 300:
        time.sleep(0.05)
        with lock:
            acks, received[:] = list(received), []
        if batched:
            client.ack_many(acks)  # type: ignore[attr-defined]
        else:
            for mid, qos in acks:
                client.ack(mid, qos)
        done += len(acks)
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    client.disconnect()
    client.loop_stop()
    return {"client": "batched" if batched else "paho", "messages": done,
            "cpu_us_per_msg": round(cpu / max(done, 1) * 1e6, 1),
            "msgs_per_s": round(done / wall)}


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    p = argparse.ArgumentParser(prog="python -m ownercare.paho_receive_bench",
                                description=__doc__.splitlines()[0])
    p.add_argument("--vehicles", type=int, default=5000)
    p.add_argument("--ticks", type=int, default=12, help="messages per vehicle")
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args(argv)
    if min(args.vehicles, args.ticks, args.rounds) < 1:
        p.error("--vehicles, --ticks and --rounds must be at least 1")
    fleet = DrivingFleet(bench_vins(args.vehicles))
    messages = [m for tick in range(args.ticks)
                for m in fleet.payloads(fleet.tick(1.0), range(args.vehicles),
                                        1_767_225_600_000 + 1000 * tick)]
    port = embedded.free_port()
    with tempfile.TemporaryDirectory() as tmp:
        conf = Path(tmp) / "mosquitto.conf"
        conf.write_text(CONF.format(port=port) + ("user root\n" if os.geteuid() == 0 else ""))
        broker = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        try:
            if not embedded.wait_for_port(port, 20):
                raise SystemExit("paho_receive_bench: mosquitto did not start")
            results = []
            for round_no in range(args.rounds):
                for batched in (False, True):
                    result = drain_once(f"mqtt://127.0.0.1:{port}", messages, batched, round_no)
                    print(f"{result['client']:>8}: {result['messages']} msgs, "
                          f"{result['cpu_us_per_msg']} us CPU/msg, {result['msgs_per_s']} msg/s",
                          flush=True)
                    results.append(result)
            return results
        finally:
            broker.terminate()
            broker.wait(10)


if __name__ == "__main__":
    main()
