"""paho-mqtt client construction from an ``mqtt[s]://[user:pass@]host[:port]`` URL."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

# Persistent sessions keep unacknowledged QoS 1 messages (and messages published while the
# bridge is away) at the broker; a week covers a long outage without growing forever.
SESSION_EXPIRY_S = 7 * 24 * 3600


@dataclass(frozen=True)
class MqttTarget:
    host: str
    port: int
    username: str | None
    password: str | None
    tls: bool

    @classmethod
    def from_url(cls, url: str) -> MqttTarget:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError(f"not an MQTT URL (mqtt[s]://host:port): {url!r}")
        tls = parts.scheme == "mqtts"
        return cls(
            host=parts.hostname,
            port=parts.port or (8883 if tls else 1883),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            tls=tls,
        )


def protocol_of(version: str) -> mqtt.MQTTProtocolVersion:
    return mqtt.MQTTv5 if version == "5" else mqtt.MQTTv311


def make_client(
    url: str,
    client_id: str,
    protocol: str = "3.1.1",
    *,
    persistent: bool = False,
    manual_ack: bool = False,
    receive_maximum: int | None = None,
) -> tuple[mqtt.Client, dict[str, Any]]:
    """A configured (not yet connected) client and the kwargs for ``connect``/``connect_async``.

    ``persistent`` asks the broker to keep the session (and its queued QoS 1 messages) across
    disconnects: clean_session=False on 3.1.1, clean_start=False plus a session expiry on 5.
    """
    target = MqttTarget.from_url(url)
    version = protocol_of(protocol)
    kwargs: dict[str, Any] = {"client_id": client_id, "protocol": version, "manual_ack": manual_ack}
    if version == mqtt.MQTTv311:
        kwargs["clean_session"] = not persistent
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, **kwargs)
    if target.username is not None:
        client.username_pw_set(target.username, target.password)
    if target.tls:
        client.tls_set(cert_reqs=ssl.CERT_REQUIRED)
    client.reconnect_delay_set(min_delay=1, max_delay=30)
    connect: dict[str, Any] = {"host": target.host, "port": target.port, "keepalive": 30}
    if version == mqtt.MQTTv5:
        props = Properties(PacketTypes.CONNECT)
        if persistent:
            props.SessionExpiryInterval = SESSION_EXPIRY_S
        if receive_maximum:
            props.ReceiveMaximum = min(receive_maximum, 65535)
        connect["clean_start"] = not persistent
        connect["properties"] = props
    return client, connect
