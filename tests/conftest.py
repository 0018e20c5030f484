"""Shared fixtures: the real brokers the tests run against (Tansu, amqtt, Mosquitto)."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from ingest.kafka import ensure_topics
from ownercare import embedded

# The suite shares two cores with real brokers; time-based health checks would be flaky.
# Locally hypothesis explores new examples each run; CI replays a fixed derandomized set so a
# landing is decided by the code, not by the luck of the draw.
settings.register_profile(
    "ownercare", deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=100
)
settings.register_profile("ci", parent=settings.get_profile("ownercare"), derandomize=True,
                          max_examples=300)
settings.load_profile("ci" if os.environ.get("CI") else "ownercare")


# Partitions of the ownercare topics on the session's shared Kafka broker.
SHARED_PARTITIONS = 8


@pytest.fixture(scope="session")
def kafka_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Tansu broker for the whole session; tests isolate themselves by topic/app id."""
    port = embedded.free_port()
    log_path = tmp_path_factory.mktemp("tansu") / "tansu.log"
    proc = embedded.start_tansu(port, log_path)
    # The ownercare topics exist before any test runs, all with the same partition count:
    # whichever test comes first must not decide it for the others.
    asyncio.run(ensure_topics(f"127.0.0.1:{port}", SHARED_PARTITIONS))
    yield f"kafka://127.0.0.1:{port}"
    embedded.stop_process(proc)


class AmqttThread:
    """An amqtt broker on its own event loop in a background thread."""

    def __init__(self, port: int, journal_dir: Path | None = None,
                 owed_limit_bytes: int | None = None) -> None:
        self.port = port
        self.journal_dir = journal_dir
        self.owed_limit_bytes = owed_limit_bytes
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="amqtt")
        self.broker = None
        self.error: BaseException | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.broker = self.loop.run_until_complete(embedded.start_amqtt(
                self.port, self.journal_dir, self.owed_limit_bytes))
        except BaseException as exc:  # surfaced to the test by start()
            self.error = exc
        self._ready.set()
        if self.error is None:
            self.loop.run_forever()

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(20)
        if self.error is not None:
            raise self.error
        assert embedded.wait_for_port(self.port, 10), "amqtt did not start listening"

    def stop(self) -> None:
        if self.broker is not None:
            asyncio.run_coroutine_threadsafe(self.broker.shutdown(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


@pytest.fixture
def amqtt_url() -> Iterator[str]:
    broker = AmqttThread(embedded.free_port())
    broker.start()
    yield f"mqtt://127.0.0.1:{broker.port}"
    broker.stop()


@pytest.fixture
def mosquitto_url(tmp_path: Path) -> Iterator[str]:
    """A real Mosquitto from Debian's package (.ci/run installs it; a missing binary fails)."""
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(binary).exists():
        pytest.fail("mosquitto is not installed: apt-get install -y mosquitto (see .ci/run)")
    port = embedded.free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        "max_queued_messages 100000\nmax_inflight_messages 1000\n"
    )
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    assert embedded.wait_for_port(port, 10), "mosquitto did not start listening"
    yield f"mqtt://127.0.0.1:{port}"
    embedded.stop_process(proc)


class PostgresCluster:
    """A throwaway PostgreSQL cluster from Debian's binaries (initdb + postgres on a free port).

    initdb refuses to run as root, so under root (CI) the cluster belongs to the `postgres`
    system user and runs through runuser.
    """

    def __init__(self) -> None:
        import glob
        import os
        import tempfile

        # Not under pytest's tmp dir: that is private to root, and the server may run as the
        # postgres user.
        directory = Path(tempfile.mkdtemp(prefix="ownercare-pg-"))
        self.directory = directory

        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
        if not bins:
            pytest.fail("PostgreSQL is not installed: apt-get install -y postgresql (.ci/run)")
        self.bin = Path(bins[-1]).parent
        self.port = embedded.free_port()
        self.data = directory / "pgdata"
        self.prefix: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(directory, "postgres")
            self.prefix = ["runuser", "-u", "postgres", "--"]
        subprocess.run([*self.prefix, str(self.bin / "initdb"), "-D", str(self.data), "-A",
                        "trust", "-U", "ownercare", "--no-sync"], check=True,
                       capture_output=True)
        self.proc = subprocess.Popen(
            [*self.prefix, str(self.bin / "postgres"), "-D", str(self.data), "-p",
             str(self.port), "-k", str(directory), "-c", "listen_addresses=127.0.0.1",
             "-c", "fsync=off"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert embedded.wait_for_port(self.port, 30), "postgres did not start"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://ownercare@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh, empty database: every test starts from nothing."""
        import uuid

        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(f"postgresql://ownercare@127.0.0.1:{self.port}/postgres",
                             autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        embedded.stop_process(self.proc)
        shutil.rmtree(self.directory, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    cluster = PostgresCluster()
    yield cluster
    cluster.stop()
