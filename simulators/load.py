"""Load generator for ``ownercare bench``: N driving vehicles publishing at a fixed wall rate.

The event-time simulator (``simulators.fleet``) models days of ownership compressed in time;
a benchmark needs the opposite: a steady, known offered rate in real time. Every vehicle here
drives and publishes one telemetry message (the same ~20 VSS signals the fleet simulator sends
while driving) per ``1 / rate`` seconds, with ``ts`` = the scheduled wall time, so event time
and wall time coincide and latencies can be read off the timestamps.

Faults for the latency figure: ``inject_per_s`` times a second (after ``inject_after_s``) one
more vehicle reports a diagnostic trouble code. The DTC detector alerts on the first event, so
the time from that publish to the alert at the API is the pipeline's latency, not a detector's
patience.

Runs as its own process (``python -m simulators.load``, one or more) so it never shares a GIL
with what it measures, and publishes through ``LeanPublisher`` (see there why not paho). It
prints one JSON object per line on stdout: ``progress`` every second, ``inject`` for every
trouble code (with the wall time just before publishing), ``published`` and ``done``.
Mode ``raw`` publishes the same payloads as fast as the broker takes them, and mode ``count``
subscribes and counts: the two ends of the broker-only fan-through figure.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import orjson
import paho.mqtt.client as mqtt

from ingest.contract import TIRE_PRESSURE_SIGNALS, TIRE_TEMPERATURE_SIGNALS, Kind, topic_for
from ingest.mqtt import MqttTarget, make_client
from simulators.vin import VIN_CHARS
from vocab.eventtime import SECOND_MS

IDLE_END_S = 5.0  # the counting subscriber ends after this long without a message
SLICES_PER_S = 20  # a tick's messages are spread over the tick, not sent as one burst
DTC_CODE = "P0AA6"  # hybrid/EV battery isolation fault: a code the DTC detector rates high


def bench_vins(n: int) -> list[str]:
    """Deterministic, distinct, contract-valid VINs (17 characters)."""
    vins = []
    for i in range(n):
        digits, k = [], i
        for _ in range(8):
            k, r = divmod(k, len(VIN_CHARS))
            digits.append(VIN_CHARS[r])
        vins.append("WBENCH000" + "".join(reversed(digits)))
    return vins


class DrivingFleet:
    """Vectorised driving telemetry: one numpy update per tick for the whole fleet."""

    def __init__(self, vins: list[str], seed: int = 1) -> None:
        self.vins = vins
        n = len(vins)
        self.rng = np.random.default_rng(seed)
        self.seq = [0] * n
        self.speed = self.rng.uniform(20, 110, n)
        self.odometer = self.rng.uniform(1e6, 8e7, n)
        self.soc = self.rng.uniform(30, 95, n)
        self.soh = self.rng.uniform(88, 99, n)
        self.ambient = self.rng.uniform(-5, 25, n)
        self.tyre = self.rng.uniform(235, 255, (n, 4))
        self.lat = self.rng.uniform(48.0, 49.0, n)
        self.lon = self.rng.uniform(11.0, 12.0, n)
        self.topics = [topic_for(Kind.VEHICLE_TELEMETRY, v) for v in vins]
        self.event_topics = [topic_for(Kind.VEHICLE_EVENT, v) for v in vins]

    def tick(self, dt_s: float) -> list[list[Any]]:
        """Advance every vehicle by ``dt_s``; return per-signal value lists (fleet order)."""
        n, rng = len(self.vins), self.rng
        self.speed = np.clip(self.speed + rng.normal(0, 2, n), 0, 170)
        self.odometer += self.speed / 3.6 * dt_s
        self.soc = np.maximum(3.0, self.soc - self.speed * dt_s * 5e-5)
        self.lat += self.speed * dt_s * 1e-7
        return [
            np.round(self.speed, 1).tolist(),
            np.round(self.odometer).astype(np.int64).tolist(),  # VSS: uint32 m
            np.round(rng.uniform(13.6, 14.4, n), 3).tolist(),
            np.round(rng.uniform(2, 12, n), 2).tolist(),
            np.round(self.soc, 2).tolist(),
            np.round(self.soh, 2).tolist(),
            np.round(self.ambient + 8 + rng.normal(0, 0.3, n), 2).tolist(),
            np.round(self.ambient + 30 + rng.normal(0, 0.5, n), 2).tolist(),
            np.round(self.ambient + rng.normal(0, 0.2, n), 2).tolist(),
            np.round(self.lat, 6).tolist(),
            np.round(self.lon, 6).tolist(),
            *(np.round(self.tyre[:, w] + rng.normal(0, 0.5, n)).astype(np.int64).tolist()
              for w in range(4)),  # VSS: uint16 kPa
            np.round(self.ambient + 10, 1).tolist(),
        ]

    def payloads(self, columns: list[list[Any]], indices: range, ts: int) -> Iterator[
            tuple[str, bytes]]:
        (speed, odo, volts, amps, soc, soh, batt_t, coolant_t, air_t, lat, lon,
         p1, p2, p3, p4, tyre_t) = columns
        for i in indices:
            self.seq[i] += 1
            signals: dict[str, Any] = {
                "Vehicle.Speed": speed[i],
                "Vehicle.IsMoving": speed[i] > 0,
                "Vehicle.TraveledDistance": odo[i],
                "Vehicle.LowVoltageSystemState": "ON",
                "Vehicle.LowVoltageBattery.CurrentVoltage": volts[i],
                "Vehicle.LowVoltageBattery.CurrentCurrent": amps[i],
                "Vehicle.Powertrain.TractionBattery.StateOfCharge.Current": soc[i],
                "Vehicle.Powertrain.TractionBattery.StateOfHealth": soh[i],
                "Vehicle.Powertrain.TractionBattery.Temperature.Average": batt_t[i],
                "Vehicle.Powertrain.ElectricMotor.EngineCoolant.Temperature": coolant_t[i],
                "Vehicle.Exterior.AirTemperature": air_t[i],
                "Vehicle.CurrentLocation.Latitude": lat[i],
                "Vehicle.CurrentLocation.Longitude": lon[i],
            }
            for p_path, t_path, pressure in zip(TIRE_PRESSURE_SIGNALS, TIRE_TEMPERATURE_SIGNALS,
                                                (p1, p2, p3, p4), strict=True):
                signals[p_path] = pressure[i]
                signals[t_path] = tyre_t[i]
            yield self.topics[i], orjson.dumps({"ts": ts, "seq": self.seq[i], "signals": signals})

    def dtc_event(self, i: int, ts: int) -> tuple[str, bytes]:
        self.seq[i] += 1
        body = {"ts": ts, "seq": self.seq[i], "type": "dtc", "code": DTC_CODE, "state": "active"}
        return self.event_topics[i], orjson.dumps(body)


class LeanPublisher:
    """A minimal MQTT 3.1.1 publisher (CONNECT, PUBLISH at QoS 0/1, PUBACK) for load only.

    Real vehicles are not Python processes sharing the benchmark's two cores. paho spends about
    60 us of CPU per QoS 1 publish, so a paho-driven 10 000 msg/s fleet would take half the
    machine from the system it measures; this client writes whole slices of pre-encoded PUBLISH
    packets with one system call and counts PUBACKs on a reader thread. The broker and
    everything behind it see ordinary MQTT; the test suite checks a paho subscriber receives
    every message intact.
    """

    def __init__(self, mqtt_url: str, client_id: str, qos: int, max_in_flight: int) -> None:
        target = MqttTarget.from_url(mqtt_url)
        if target.tls or target.username is not None:
            raise SystemExit("load: the benchmark publisher speaks plain, anonymous MQTT only")
        self.qos = qos
        self.max_in_flight = max_in_flight
        self.sent = 0  # handed to publish()
        self.transmitted = 0  # written to the socket
        self.acked = 0
        self.error: str | None = None
        self._buffer: list[bytes] = []
        self._next_id = 0
        self._acks = threading.Condition()
        self.sock = socket.create_connection((target.host, target.port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        cid = client_id.encode()
        # Protocol "MQTT" level 4, clean session, keep-alive 0 (we never go quiet).
        variable = b"\x00\x04MQTT\x04\x02\x00\x00" + len(cid).to_bytes(2, "big") + cid
        self.sock.sendall(b"\x10" + _remaining_length(len(variable)) + variable)
        connack = self._read_exact(4)
        if connack[0] != 0x20 or connack[3] != 0:
            raise SystemExit(f"load: {mqtt_url} refused the connection (CONNACK {connack!r})")
        self.sock.settimeout(None)
        threading.Thread(target=self._read_acks, daemon=True).start()

    def _read_exact(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("broker closed the connection")
            data += chunk
        return data

    def _read_acks(self) -> None:
        pending = b""
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError("broker closed the connection")
                pending += chunk
                acks = 0
                while len(pending) >= 2:  # PUBACK is 4 bytes; nothing else is expected
                    if pending[0] >> 4 != 4 or pending[1] != 2:
                        raise ConnectionError(f"unexpected packet type {pending[0] >> 4}")
                    if len(pending) < 4:
                        break
                    pending = pending[4:]
                    acks += 1
                with self._acks:
                    self.acked += acks
                    self._acks.notify_all()
        except OSError as exc:
            self.error = str(exc)
            with self._acks:
                self._acks.notify_all()

    def publish(self, topic: str, payload: bytes) -> None:
        name = topic.encode()
        if self.qos:
            self._next_id = self._next_id % 65535 + 1
            body = (len(name).to_bytes(2, "big") + name + self._next_id.to_bytes(2, "big")
                    + payload)
            header = b"\x32"
        else:
            body = len(name).to_bytes(2, "big") + name + payload
            header = b"\x30"
        self._buffer.append(header + _remaining_length(len(body)) + body)
        self.sent += 1

    def flush(self) -> None:
        """Send what ``publish`` queued; block while too many are unacknowledged."""
        if self.qos:
            with self._acks:
                while (self.transmitted - self.acked > self.max_in_flight
                       and self.error is None):
                    self._acks.wait(1.0)
        if self.error is not None:
            raise SystemExit(f"load: lost the broker: {self.error}")
        if self._buffer:
            self.sock.sendall(b"".join(self._buffer))
            self.transmitted += len(self._buffer)
            self._buffer = []

    def wait_acked(self, timeout: float) -> bool:
        self.flush()
        deadline = time.monotonic() + timeout
        with self._acks:
            while self.qos and self.acked < self.sent and self.error is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._acks.wait(left)
        return self.error is None

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.sendall(b"\xe0\x00")  # DISCONNECT
            self.sock.close()


def _remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def emit(**fields: Any) -> None:
    sys.stdout.write(orjson.dumps(fields).decode() + "\n")
    sys.stdout.flush()


def run_paced(args: argparse.Namespace) -> None:
    part, parts = args.part
    # Publishing processes split the fleet: one paho client tops out near 10 k QoS 1 msg/s.
    fleet = DrivingFleet(bench_vins(args.vehicles)[part::parts], args.seed + part)
    pub = LeanPublisher(args.mqtt_url, f"bench-load-{args.seed}-{part}", args.qos,
                    args.max_in_flight)
    n = len(fleet.vins)
    period = 1.0 / args.rate
    slice_s = max(period / SLICES_PER_S, 1.0 / SLICES_PER_S / 4)
    slices = max(1, round(period / slice_s))
    bounds = [round(n * k / slices) for k in range(slices + 1)]
    # Distinct vehicles report a trouble code, spread over the fleet.
    inject_total = int(max(0.0, args.duration - args.inject_after_s) * args.inject_per_s
                       ) if part == 0 else 0
    inject_order = [(k * 7919) % n for k in range(min(inject_total, n))]
    injected = 0
    start = time.time()
    next_progress = start + 1.0
    tick = 0
    columns: list[list[Any]] = []
    while True:
        tick_start = start + tick * period
        if tick_start >= start + args.duration:
            break
        columns = fleet.tick(period)
        for s in range(slices):
            due = tick_start + s * period / slices
            delay = due - time.time()
            if delay > 0:
                time.sleep(delay)
            ts = int(due * SECOND_MS)
            for topic, payload in fleet.payloads(columns, range(bounds[s], bounds[s + 1]), ts):
                pub.publish(topic, payload)
            while (injected < len(inject_order)
                   and start + args.inject_after_s + injected / args.inject_per_s <= due):
                i = inject_order[injected]
                topic, payload = fleet.dtc_event(i, ts)
                emit(event="inject", vin=fleet.vins[i], t_pub=time.time())
                pub.publish(topic, payload)
                injected += 1
            pub.flush()
            now = time.time()
            if now >= next_progress:
                next_progress += 1.0
                emit(event="progress", t=now, sent=pub.sent, acked=pub.acked,
                     behind_s=round(max(0.0, now - due), 3))
        tick += 1
    emit(event="published", t=time.time(), sent=pub.sent, acked=pub.acked)
    drained = pub.wait_acked(60)
    emit(event="done", t=time.time(), sent=pub.sent, acked=pub.acked, drained=drained,
         seconds=round(time.time() - start, 3))
    pub.close()


def run_raw(args: argparse.Namespace) -> None:
    """As fast as the broker acknowledges: the broker-only fan-through figure's publisher."""
    fleet = DrivingFleet(bench_vins(args.vehicles), args.seed)
    pub = LeanPublisher(args.mqtt_url, f"bench-raw-{args.seed}", args.qos, args.max_in_flight)
    n = len(fleet.vins)
    start = time.time()
    ts = int(start * SECOND_MS)
    while pub.sent < args.count:
        columns = fleet.tick(1.0)
        ts += SECOND_MS
        todo = min(n, args.count - pub.sent)
        for topic, payload in fleet.payloads(columns, range(todo), ts):
            pub.publish(topic, payload)
            if pub.sent % 100 == 0:
                pub.flush()  # waits while more than --max-in-flight are unacknowledged
    drained = pub.wait_acked(120)
    emit(event="done", t=time.time(), sent=pub.sent, acked=pub.acked, drained=drained,
         seconds=round(time.time() - start, 3))
    pub.close()


def count_subscriber(args: argparse.Namespace) -> None:
    """A plain subscriber that counts what arrives: the other end of the raw figure."""
    client, connect = make_client(args.mqtt_url, f"bench-count-{args.seed}")
    received = 0
    first = last = 0.0
    lock = threading.Lock()
    ready = threading.Event()

    def on_connect(c: mqtt.Client, *_a: Any) -> None:
        c.subscribe("vehicles/#", qos=args.qos)

    def on_subscribe(*_a: Any) -> None:
        ready.set()

    def on_message(*_a: Any) -> None:
        nonlocal received, first, last
        now = time.time()
        with lock:
            if received == 0:
                first = now
            received += 1
            last = now

    client.on_connect, client.on_subscribe, client.on_message = on_connect, on_subscribe, on_message
    client.connect(**connect)
    client.loop_start()
    if not ready.wait(30):
        raise SystemExit(f"load: could not subscribe at {args.mqtt_url} within 30 s")
    emit(event="subscribed", t=time.time())
    deadline = time.time() + args.duration
    while time.time() < deadline and received < args.count:
        if received and time.time() - last > IDLE_END_S:  # QoS 0 may lose some: stop waiting
            break
        time.sleep(0.05)
    client.disconnect()
    client.loop_stop()
    emit(event="done", received=received, first=first, last=last,
         rate=round((received - 1) / (last - first), 1) if received > 1 and last > first else 0.0)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m simulators.load",
                                description=(__doc__ or "").split("\n")[0])
    p.add_argument("mode", choices=("paced", "raw", "count"))
    p.add_argument("--mqtt-url", required=True)
    p.add_argument("--vehicles", type=int, default=1000)
    p.add_argument("--rate", type=float, default=1.0, help="messages per vehicle per second")
    p.add_argument("--duration", type=float, default=60.0, help="seconds")
    p.add_argument("--count", type=int, default=100_000, help="raw/count: messages")
    p.add_argument("--qos", type=int, choices=(0, 1), default=1)
    p.add_argument("--max-in-flight", type=int, default=1000)
    p.add_argument("--inject-per-s", type=float, default=1.0)
    p.add_argument("--inject-after-s", type=float, default=10.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--part", type=_part, default=(0, 1), metavar="I/K",
                   help="paced: publish every K-th vehicle starting at the I-th (default 0/1)")
    return p


def _part(text: str) -> tuple[int, int]:
    try:
        i, k = (int(x) for x in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not I/K (e.g. 0/2)") from None
    if not 0 <= i < k:
        raise argparse.ArgumentTypeError(f"{text!r}: need 0 <= I < K")
    return i, k


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    {"paced": run_paced, "raw": run_raw, "count": count_subscriber}[args.mode](args)


if __name__ == "__main__":
    main()
