"""An open alert stream ends once its key is revoked or its role no longer reads, within
the re-check bound, over real HTTP."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest

from api import alert_stream
from config.settings import ApiSettings
from storage.keys import KeyStore
from storage.store import Store
from tests.apikit import Server

pytestmark = pytest.mark.integration


def test_a_revoked_keys_stream_ends_within_the_recheck_bound(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'stream.sqlite'}")
    keys = KeyStore(store)
    row, key = keys.create("watcher", "viewer")
    _other, other_key = keys.create("other", "viewer")
    ended: dict[str, float] = {}

    def watch(name: str, presented: str) -> None:
        try:
            with httpx.stream("GET", f"{server.url}/alerts/stream",
                              headers={"Authorization": f"Bearer {presented}"},
                              timeout=alert_stream.KEY_RECHECK_S * 5) as resp:
                assert resp.status_code == 200
                for _ in resp.iter_lines():
                    pass
        except httpx.RemoteProtocolError:  # cut off when the server stops: not an end
            return
        ended[name] = time.monotonic()  # a clean end of the event stream

    with Server(ApiSettings(state_dir=tmp_path), store) as server:
        threads = [threading.Thread(target=watch, args=(name, k), daemon=True)
                   for name, k in (("revoked", key), ("kept", other_key))]
        for t in threads:
            t.start()
        time.sleep(0.5)  # both streams are open
        revoked_at = time.monotonic()
        keys.revoke(row["id"])
        threads[0].join(alert_stream.KEY_RECHECK_S + 2)
        assert "revoked" in ended, "the revoked key's stream is still open"
        assert ended["revoked"] - revoked_at <= alert_stream.KEY_RECHECK_S + 1.5
        assert "kept" not in ended  # a valid key's stream stays open
        # A revoked key cannot open a new one either.
        resp = httpx.get(f"{server.url}/alerts/stream",
                         headers={"Authorization": f"Bearer {key}"})
        assert resp.status_code == 401
