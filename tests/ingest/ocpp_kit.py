"""A real OCPP gateway on its own thread and event loop, and charge points for the tests."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import random
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from ocpp.v16 import ChargePoint
from websockets.asyncio.client import ClientConnection, connect

from config.settings import OcppSettings
from ingest import ocpp_credentials
from ingest.ocpp_gateway import Gateway


class GatewayThread:
    def __init__(self, settings: OcppSettings, credentials: dict[str, str]) -> None:
        self.gateway = Gateway(settings, credentials)
        self._loop: asyncio.AbstractEventLoop | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        async def go() -> None:
            self._loop = asyncio.get_running_loop()
            await self.gateway.run()

        try:
            asyncio.run(go())
        except BaseException as exc:  # reported by the test that started it
            self.error = exc

    def start(self, timeout: float = 60) -> None:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.gateway.ready.is_set():
            if self.error is not None or not self._thread.is_alive():
                raise RuntimeError(f"the gateway did not start: {self.error!r}")
            if time.monotonic() > deadline:
                raise TimeoutError("the gateway did not listen in time")
            time.sleep(0.02)

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.gateway.stop)
        self._thread.join(30)
        assert not self._thread.is_alive(), "the gateway did not stop"
        assert self.error is None, self.error

    def url(self, charger_id: str) -> str:
        return f"ws://127.0.0.1:{self.gateway.port}/ocpp/{charger_id}"


@contextlib.contextmanager
def running_gateway(kafka_url: str, tmp_path: Path, chargers: dict[str, str],
                    **overrides: object) -> Iterator[GatewayThread]:
    """A gateway knowing ``chargers`` (id -> password), on a free port."""
    path = tmp_path / f"ocpp-credentials-{random.randrange(10**9)}"
    for charger_id, password in chargers.items():
        ocpp_credentials.add(path, charger_id, password)
    settings = OcppSettings(kafka_url=kafka_url, ocpp_port=0, ocpp_credentials_file=str(path),
                            **overrides)  # type: ignore[arg-type]
    runner = GatewayThread(settings, ocpp_credentials.load(path))
    runner.start()
    try:
        yield runner
    finally:
        runner.stop()


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@contextlib.asynccontextmanager
async def charge_point(url: str, charger_id: str, password: str
                       ) -> AsyncIterator[ChargePoint]:
    """The ocpp library's own charge-point client, connected and listening."""
    async with connect(url, subprotocols=["ocpp1.6"],  # type: ignore[list-item]
                       additional_headers=basic(charger_id, password)) as ws:
        point = ChargePoint(charger_id, ws, response_timeout=30)
        listener = asyncio.create_task(point.start())
        try:
            yield point
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await listener


async def raw_call(ws: ClientConnection, frame: str) -> list[object]:
    """Send one raw frame, return the gateway's answer as a list."""
    import json

    await ws.send(frame)
    answer = json.loads(await asyncio.wait_for(ws.recv(), 30))
    assert isinstance(answer, list)
    return answer
