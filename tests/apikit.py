"""What API tests share: a real uvicorn server in a thread, and API keys for it."""

from __future__ import annotations

import threading
import time

import uvicorn

from api.app import create_app
from config.settings import ApiSettings
from ownercare import embedded
from storage.keys import KeyStore
from storage.store import Store


class Server:
    """uvicorn serving ``create_app(settings, store)`` on a free port, in a thread."""

    def __init__(self, settings: ApiSettings, store: Store | None = None) -> None:
        self.port = embedded.free_port()
        self.app = create_app(settings, store)
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port,
                                log_level="warning", timeout_graceful_shutdown=1)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start in 10 s"
            assert self.thread.is_alive(), "uvicorn failed"
            time.sleep(0.02)
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        assert not self.thread.is_alive(), "uvicorn did not stop"


def headers_for(store: Store, role: str = "admin", name: str | None = None) -> dict[str, str]:
    """A fresh key of ``role`` in ``store``, as the request header that presents it."""
    _row, key = KeyStore(store).create(name or f"test-{role}", role)
    return {"Authorization": f"Bearer {key}"}
