"""Settings from the environment (``OWNERCARE_*``), one object per service.

Nothing is created at import time: each service calls ``XSettings()`` at start-up, so a bad
value fails there with pydantic's precise message (``ownercare`` turns it into exit code 2).
Defaults point at the embedded stack that ``ownercare run`` starts.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from care.casework import parse_sla_hours
from care.webhooks import IpNetwork, parse_networks


def mask_url(url: str) -> str:
    """The URL with any password replaced by ``***``, for logs and ``ownercare config``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def _check_scheme(url: str, schemes: tuple[str, ...], name: str) -> str:
    scheme = urlsplit(url).scheme
    if scheme not in schemes:
        raise ValueError(f"{name} must start with {' or '.join(s + '://' for s in schemes)}")
    if not urlsplit(url).hostname and scheme not in ("sqlite",):
        raise ValueError(f"{name} needs a host, e.g. {schemes[0]}://127.0.0.1")
    return url


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OWNERCARE_", extra="ignore")

    state_dir: Path = Field(Path(".ownercare"), description="Where run.json and SQLite live.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class KafkaSettings(CommonSettings):
    kafka_url: str = Field("kafka://127.0.0.1:9092", description="Kafka bootstrap server(s).")
    partitions: int = Field(8, ge=1, le=1024, description="Partitions of the ownercare topics.")

    @field_validator("kafka_url")
    @classmethod
    def _kafka_url(cls, v: str) -> str:
        for part in v.split(";"):
            _check_scheme(part, ("kafka",), "OWNERCARE_KAFKA_URL")
        return v

    @property
    def kafka_bootstrap(self) -> str:
        """host:port[,host:port] for aiokafka."""
        return ",".join(urlsplit(u).netloc for u in self.kafka_url.split(";"))


class DatabaseSettings(CommonSettings):
    database_url: str = Field(
        "", description="SQLAlchemy URL; empty means sqlite:///<state_dir>/ownercare.db."
    )

    @field_validator("database_url")
    @classmethod
    def _db_url(cls, v: str) -> str:
        if v and urlsplit(v).scheme.split("+")[0] not in ("sqlite", "postgresql"):
            raise ValueError("OWNERCARE_DATABASE_URL must be a sqlite:// or postgresql:// URL")
        return v

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.state_dir / 'ownercare.db').resolve()}"


class CatalogueSettings(CommonSettings):
    """The signal catalogue: what the bridge validates against and the API documents."""

    vss_overlays: str = Field(
        "", description="VSS overlay files (.vspec YAML, comma-separated) adding private signals "
        "to, or narrowing signals of, the pinned VSS release the bridge validates against; "
        "applied in order.")

    @field_validator("vss_overlays")
    @classmethod
    def _vss_overlays(cls, v: str) -> str:
        for item in v.split(","):
            if item.strip() and not Path(item.strip()).is_file():
                raise ValueError(f"OWNERCARE_VSS_OVERLAYS: {item.strip()!r} is not a file")
        return v

    @property
    def vss_overlay_paths(self) -> tuple[Path, ...]:
        return tuple(Path(item.strip()) for item in self.vss_overlays.split(",") if item.strip())


MAX_SHARDS = 1024
_SHARD_RE = re.compile(r"([0-9]{1,4})/([0-9]{1,4})")


def parse_shard(value: str) -> tuple[int, int]:
    """``"k/n"`` -> (k, n) with 1 <= k <= n <= MAX_SHARDS; ``""`` -> (1, 1)."""
    if not value:
        return 1, 1
    match = _SHARD_RE.fullmatch(value.strip())
    if match is None:
        raise ValueError(f"OWNERCARE_BRIDGE_SHARD: {value!r} is not k/n (for example 1/2)")
    k, n = int(match[1]), int(match[2])
    if not 1 <= k <= n <= MAX_SHARDS:
        raise ValueError(f"OWNERCARE_BRIDGE_SHARD: {value!r} needs 1 <= k <= n <= {MAX_SHARDS}")
    return k, n


class BridgeSettings(KafkaSettings, CatalogueSettings):
    mqtt_url: str = Field("mqtt://127.0.0.1:1883", description="MQTT broker, mqtt[s]://[user:pass@]host:port")
    mqtt_protocol: Literal["3.1.1", "5"] = "3.1.1"
    mqtt_client_id: str = "ownercare-bridge"
    mqtt_shared_group: str = Field(
        "", description="If set, subscribe with $share/<group>/... so bridges split the load. "
        "Only for a broker that hands one publisher's messages to one member (EMQX "
        "hash_clientid): Mosquitto hands them out in turn, which reorders an asset's records; "
        "use OWNERCARE_BRIDGE_SHARD there."
    )
    bridge_shard: str = Field(
        "", description="k/n: this bridge forwards the assets in share k of n (murmur2 of the "
        "id, as Kafka partitions them) and acknowledges the rest unread, so n bridges each "
        "subscribed to everything split the fleet with each asset's order kept; empty = all.")
    max_payload_bytes: int = Field(64 * 1024, ge=256, le=16 * 1024 * 1024)
    bridge_batch_max: int = Field(
        500, ge=1, le=100_000, description="Canonical records packed into one Kafka record."
    )
    bridge_linger_ms: int = Field(50, ge=0, le=10_000, description="Max wait to fill a batch.")
    bridge_max_in_flight: int = Field(
        10_000, ge=1, description="Unacknowledged MQTT messages before the bridge stops reading."
    )
    broker_give_up_s: float = Field(
        60.0, gt=0, description="Exit non-zero when a broker stays unreachable this long."
    )
    # Five minutes: far above the clock error of a cellular unit synchronised over NTP/GNSS
    # (well under a second) and the transport delay, yet far below the sweep, silence and
    # dedup horizons a record from the future could distort (15 min, 3 h).
    bridge_max_future_skew_s: float = Field(
        300.0, ge=0, description="Dead-letter a record whose ts is further ahead of the "
        "bridge's receive time (reason ts_in_future); 0 disables the check (a simulated fleet "
        "whose accelerated event time outruns the wall clock).")


    @property
    def max_future_skew_ms(self) -> int | None:
        return None if self.bridge_max_future_skew_s == 0 else int(
            self.bridge_max_future_skew_s * 1000)

    @field_validator("mqtt_url")
    @classmethod
    def _mqtt_url(cls, v: str) -> str:
        return _check_scheme(v, ("mqtt", "mqtts"), "OWNERCARE_MQTT_URL")

    @field_validator("bridge_shard")
    @classmethod
    def _bridge_shard(cls, v: str) -> str:
        parse_shard(v)
        return v

    @model_validator(mode="after")
    def _one_way_to_split(self) -> BridgeSettings:
        if self.bridge_shard and self.mqtt_shared_group:
            raise ValueError("OWNERCARE_BRIDGE_SHARD and OWNERCARE_MQTT_SHARED_GROUP both set: "
                             "a shard subscribes to every asset itself; set one of them")
        return self

    @property
    def shard(self) -> tuple[int, int]:
        """(k, n) of OWNERCARE_BRIDGE_SHARD, 1-based; (1, 1) when unset."""
        return parse_shard(self.bridge_shard)


class OcppSettings(KafkaSettings):
    """`ownercare ocpp`: the OCPP 1.6J central system real charge points connect to."""

    ocpp_enabled: bool = Field(
        False, description="`ownercare run` starts the OCPP gateway (as does its --ocpp).")
    ocpp_host: str = Field("127.0.0.1", description="Listen address of the OCPP gateway.")
    ocpp_port: int = Field(9000, ge=0, le=65535, description="Listen port; 0 = any free one.")
    ocpp_path: str = Field(
        "/ocpp", description="URL path before the chargeBoxId: ws://host:port<path>/<id>.")
    ocpp_credentials_file: str = Field(
        "", description="File of charger_id:scrypt-hash lines (`ownercare ocpp add-charger`); "
        "required: a charge point not in it is refused at the handshake.")
    ocpp_id_tags: str = Field(
        "", description="Comma-separated idTags Authorize/StartTransaction accept; empty = "
        "accept every idTag.")
    ocpp_heartbeat_s: int = Field(
        300, ge=10, le=86_400, description="Heartbeat interval given in BootNotification.")
    ocpp_clockless_records: bool = Field(
        True, description="Heartbeat and BootNotification records (stamped with the "
        "gateway's receive time); off for a simulated fleet whose event time is not the wall "
        "clock.")
    ocpp_max_frame_bytes: int = Field(64 * 1024, ge=1024, le=16 * 1024 * 1024)
    ocpp_max_future_skew_s: float = Field(
        300.0, ge=0, description="Refuse a call whose timestamp is further ahead of the "
        "gateway's receive time (reason ts_in_future); 0 disables the check.")
    broker_give_up_s: float = Field(
        60.0, gt=0, description="Exit non-zero when Kafka stays unreachable this long.")

    @field_validator("ocpp_path")
    @classmethod
    def _ocpp_path(cls, v: str) -> str:
        if not v.startswith("/") or "?" in v or "#" in v:
            raise ValueError("OWNERCARE_OCPP_PATH must be a URL path starting with /")
        return v

    @property
    def id_tag_allow_list(self) -> frozenset[str]:
        """idTags are case-insensitive in OCPP 1.6 (CiString20)."""
        return frozenset(t.strip().upper() for t in self.ocpp_id_tags.split(",") if t.strip())

    @property
    def ocpp_max_future_skew_ms(self) -> int | None:
        return None if self.ocpp_max_future_skew_s == 0 else int(
            self.ocpp_max_future_skew_s * 1000)


class CaseSettings(CommonSettings):
    """Care cases: the SLA (hours until due) per severity. Read by the worker, which opens
    and escalates cases as alerts arrive, and by the API."""

    case_sla_hours: str = Field(
        "critical=4,warning=24,info=72",
        description="Hours from a case's first alert until it is due, per severity.")

    @field_validator("case_sla_hours")
    @classmethod
    def _case_sla_hours(cls, v: str) -> str:
        parse_sla_hours(v)
        return v

    @property
    def case_sla(self) -> dict[str, float]:
        return parse_sla_hours(self.case_sla_hours)


class WorkerSettings(KafkaSettings, DatabaseSettings, CaseSettings):
    worker_app_id: str = Field("ownercare", description="Faust app id (consumer group prefix).")
    worker_web_port: int = Field(0, ge=0, le=65535, description="Faust web port; 0 = disabled.")
    kafka_fetch_max_wait_ms: int = Field(
        100, ge=1, le=10_000,
        description="Longest a Kafka fetch waits for data (Faust's own default is 1500 ms).")
    latest_flush_s: float = Field(
        10.0, ge=0.05, le=300,
        description="How often the latest signal values (vehicle view) are written, seconds.")
    trend_flush_s: float = Field(
        60.0, ge=0.05, le=3600,
        description="How often the daily trend of every numeric signal is written, seconds "
                    "(merged in memory in between; never more often than the latest values). "
                    "A crash loses the trend readings merged since the last such write.")
    worker_buffer_records: int = Field(
        128, ge=4, le=100_000,
        description="Kafka records (bridge batches of up to OWNERCARE_BRIDGE_BATCH_MAX "
                    "messages) an agent holds fetched but unprocessed before its consumer "
                    "stops fetching those partitions (Faust's stream_buffer_maxsize). Bounds "
                    "the worker's memory while it works off a backlog.")
    view_backlog_mib: float = Field(
        64.0, ge=1, le=4096,
        description="Telemetry (MiB of Kafka record bytes) the worker may gather for its view "
                    "writer while that is busy writing; past it the agents wait until it is "
                    "handed over. Bounds the worker's memory while it works off a backlog "
                    "faster than the views are written.")
    worker_standby_replicas: int = Field(
        1, ge=0, le=3,
        description="Workers that keep a copy of each partition's detector state up to date "
                    "from its changelog (Faust's table_standby_replicas), so one can take the "
                    "partition over without first restoring it. One costs about a third more "
                    "worker CPU per message with two or three workers (docs/benchmarks.md); "
                    "0 = none, not yet proven through a takeover (docs/operations.md).")
    state_checkpoint_s: float = Field(
        30.0, ge=0, le=300,
        description="How often each partition's changed detector states are written to the "
                    "table changelog, seconds (a restart replays what came after); 0 = after "
                    "every record.")
    changelog_refresh_s: float = Field(
        600.0, ge=0, le=86400,
        description="How often each partition's checkpoint rewrites every detector state it "
                    "holds, seconds, so the embedded Kafka can trim the changelog below "
                    "(Apache Kafka compacts it anyway); 0 = never: the embedded stack's "
                    "changelogs then keep every checkpoint ever written.")
    generic_detector: bool = Field(
        False, description="Run the generic detector on every numeric signal of every car "
        "(alert type signal_drift, table generic-diagnostics); off: it catches none of the "
        "simulator's faults, so it has no lead to show (docs/quality.md).")
    ota_signing_key: str = Field(
        "", description="PEM file of the ed25519 key that signs OTA manifests "
        "(`ownercare ota keygen`); empty = the worker runs no OTA campaigns. `ownercare run` "
        "signs with it when set, else with a key pair it keeps in its state directory.")
    ota_step_s: float = Field(
        10.0, ge=0.1, le=3600,
        description="How far the fleet's event time moves between two OTA engine steps, "
                    "seconds of event time (checked every OWNERCARE_OTA_POLL_S).")
    ota_poll_s: float = Field(
        0.5, ge=0.05, le=60,
        description="How often the leader worker looks whether an OTA step is due, "
                    "wall-clock seconds.")

    @field_validator("ota_signing_key")
    @classmethod
    def _signing_key(cls, v: str) -> str:
        if v and not Path(v).is_file():
            raise ValueError(f"OWNERCARE_OTA_SIGNING_KEY: no such file {v!r}")
        return v


class WebhookSettings(CommonSettings):
    """Webhook delivery (the API runs the dispatcher). Retry n waits
    min(cap, base * 2**(n-1)) seconds; after ``webhook_max_attempts`` tries a delivery is dead."""

    webhook_allow_http: bool = Field(
        False, description="Accept plain http:// webhook URLs (tests, local development).")
    webhook_allow_networks: str = Field(
        "", description="Comma-separated networks webhooks may reach although they are "
        "loopback, private, link-local or otherwise internal (on-premises receivers), e.g. "
        "10.20.0.0/16,192.168.1.5/32; empty = public addresses only.")
    webhook_timeout_s: float = Field(10.0, gt=0, le=120, description="Per-request timeout.")
    webhook_max_attempts: int = Field(8, ge=1, le=50, description="Tries before dead-letter.")
    webhook_backoff_base_s: float = Field(
        30.0, gt=0, le=86_400, description="Wait before the first retry, seconds.")
    webhook_backoff_cap_s: float = Field(
        6 * 3600.0, gt=0, le=7 * 86_400, description="Longest wait between retries, seconds.")
    webhook_poll_s: float = Field(
        1.0, gt=0, le=300, description="How often the dispatcher looks for due deliveries.")
    webhook_lease_s: float = Field(
        60.0, gt=0, le=3600,
        description="How long a claimed delivery is reserved for one API replica; must "
                    "exceed the timeout, or another replica could send it again meanwhile.")
    webhook_batch: int = Field(20, ge=1, le=1000, description="Deliveries sent concurrently.")
    webhook_retention_days: float = Field(
        7.0, gt=0, le=3650, description="Delivered deliveries are forgotten after this long; "
                                         "dead ones stay until retried or deleted.")

    @field_validator("webhook_allow_networks")
    @classmethod
    def _allow_networks(cls, v: str) -> str:
        try:
            parse_networks(v)
        except ValueError as exc:
            raise ValueError(f"OWNERCARE_WEBHOOK_ALLOW_NETWORKS: {exc}") from None
        return v

    @property
    def webhook_allowed_networks(self) -> tuple[IpNetwork, ...]:
        return parse_networks(self.webhook_allow_networks)

    @model_validator(mode="after")
    def _webhook_consistent(self) -> WebhookSettings:
        if self.webhook_backoff_cap_s < self.webhook_backoff_base_s:
            raise ValueError("OWNERCARE_WEBHOOK_BACKOFF_CAP_S must be at least "
                             "OWNERCARE_WEBHOOK_BACKOFF_BASE_S")
        if self.webhook_lease_s <= self.webhook_timeout_s:
            raise ValueError("OWNERCARE_WEBHOOK_LEASE_S must be longer than "
                             "OWNERCARE_WEBHOOK_TIMEOUT_S")
        return self


class ApiSettings(KafkaSettings, DatabaseSettings, CaseSettings, WebhookSettings,
                  CatalogueSettings):
    worker_app_id: str = Field("ownercare", description="The worker's Faust app id: its "
                               "consumer group, whose lag GET /metrics reports.")
    api_host: str = "127.0.0.1"
    api_port: int = Field(8000, ge=1, le=65535)
    api_page_max: int = Field(500, ge=1, le=10_000, description="Largest page size allowed.")
    api_max_body_bytes: int = Field(
        1024 * 1024, ge=1024, le=64 * 1024 * 1024,
        description="Larger request bodies get 413 before they are read.")
    api_rate_limit_per_s: float = Field(
        50.0, ge=0, description="Requests per second per API key on average; 0 = no limit.")
    api_rate_limit_burst: int = Field(200, ge=1, description="Requests a key may burst.")
    api_auth_failures_per_s: float = Field(
        2.0, ge=0, description="Failed authentications per second per client address on "
        "average; past it (and the burst) the address gets 429 before its key is looked up. "
        "0 = no limit.")
    api_auth_failure_burst: int = Field(
        20, ge=1, description="Failed authentications a client address may burst.")
    api_cors_origins: str = Field(
        "", description="Comma-separated browser origins allowed by CORS, e.g. "
        "https://console.example.com; empty = no cross-origin access.")

    @field_validator("api_cors_origins")
    @classmethod
    def _cors(cls, v: str) -> str:
        for origin in filter(None, (o.strip() for o in v.split(","))):
            parts = urlsplit(origin)
            if origin != "*" and (parts.scheme not in ("http", "https") or not parts.hostname
                                  or parts.path not in ("", "/")):
                raise ValueError(f"OWNERCARE_API_CORS_ORIGINS: {origin!r} is not an origin "
                                 "like https://console.example.com (or *)")
        return v

    @property
    def cors_origins(self) -> list[str]:
        return [o.strip().rstrip("/") for o in self.api_cors_origins.split(",") if o.strip()]


class ArchiveSettings(KafkaSettings):
    """The telemetry archive: Kafka -> InfluxDB (v2 write API). Off unless a URL is set."""

    influx_url: str = Field("", description="InfluxDB URL, e.g. http://127.0.0.1:8086; "
                            "empty = archive off")
    influx_token: SecretStr = Field(SecretStr(""), description="InfluxDB API token")
    influx_org: str = "ownercare"
    influx_bucket: str = "telemetry"
    archive_group: str = Field("ownercare-archive", description="Kafka consumer group")
    archive_batch_max: int = Field(
        2000, ge=1, le=100_000,
        description="Kafka records (each a batch of telemetry) per InfluxDB write; bounds memory")
    archive_retry_max_s: float = Field(30.0, gt=0, description="Longest backoff between retries")

    @field_validator("influx_url")
    @classmethod
    def _influx_url(cls, v: str) -> str:
        return _check_scheme(v, ("http", "https"), "OWNERCARE_INFLUX_URL") if v else v


class RunSettings(BridgeSettings, WorkerSettings, ApiSettings, OcppSettings):
    """`ownercare run`: the embedded stack takes the ports from here."""

    mqtt_port: int = Field(1883, ge=1, le=65535, description="Embedded amqtt broker port.")
    kafka_port: int = Field(9092, ge=1, le=65535, description="Embedded Tansu broker port.")
    embedded_kafka_storage: Literal["disk", "memory"] = Field(
        "disk", description="Where the embedded Tansu keeps its log: disk (<state dir>/kafka, "
        "survives restarts) or memory (faster, lost when it stops).")
    kafka_s3_port: int = Field(0, ge=0, le=65535, description="Port of the embedded Tansu's "
                               "storage (S3 server, only Tansu uses it); 0: any free port.")
    kafka_retention_h: float = Field(
        0.1, gt=0, le=24 * 365, description="Embedded Kafka on disk: records older than this "
        "are deleted once every consumer group has read them.")
