"""What the embedded MQTT broker owes its persistent sessions, kept on disk.

amqtt keeps sessions, their queued messages and their in-flight messages in memory only (its
``SessionDBPlugin`` stores a disconnected session's queue after the fact, without waiting, so a
message acknowledged to its publisher can still be lost, and it never stores what is in
flight). The broker here writes to this journal *before* it acknowledges a QoS 1 message to its
publisher, for every persistent session that will receive it:

* ``P`` a message owed to one or more sessions (topic, payload, client ids);
* ``S`` the packet id it went out with to one session (so a restarted broker resends it
  with that id, and a PUBACK the subscriber sends late, on its next connection, settles the
  same message and no other);
* ``A`` one session acknowledged it;
* ``X`` a session was dropped (a clean-session connect with its client id).

Each record is one ``write`` to a file opened for appending: a ``kill -9`` of the broker
cannot lose a record the kernel has accepted, nor tear one (a machine crash can lose the
page cache, which ``fsync`` would prevent at the cost of a disk flush per message; a torn
tail is then ignored). Sessions and their subscriptions are in ``sessions.json`` beside it,
replaced whole when they change. :meth:`Journal.open` reads both back, compacts the journal
to what is still owed and keeps appending; it compacts again as it grows.
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

JOURNAL = "journal"
SESSIONS = "sessions.json"
# Compact once the file is this much larger than what it still owes (and at least this big).
COMPACT_MIN_BYTES = 16 * 1024 * 1024
COMPACT_FACTOR = 4

_LEN = struct.Struct("!I")
_PUT = struct.Struct("!QHIH")  # id, topic length, data length, sessions
_SENT = struct.Struct("!QH")  # id, packet id
_ID = struct.Struct("!Q")
_STR = struct.Struct("!H")


class JournalError(RuntimeError):
    """The journal cannot be read: not a torn tail, a record that makes no sense."""


class Journalled(bytes):
    """A payload the journal owes to sessions: the id travels with the bytes through amqtt
    (its messages have ``__slots__``, its broadcasts are dicts of topic and data)."""

    journal_id: int


def journalled(data: bytes | bytearray, journal_id: int) -> Journalled:
    payload = Journalled(data)
    payload.journal_id = journal_id
    return payload


@dataclass
class Owed:
    topic: str
    data: bytes
    clients: set[str]


@dataclass
class Restored:
    """What a journal read back holds for one session: in flight (packet id, id, topic,
    data) and then queued (id, topic, data), each oldest first."""

    subscriptions: list[tuple[str, int]]
    in_flight: list[tuple[int, int, str, bytes]] = field(default_factory=list)
    queued: list[tuple[int, str, bytes]] = field(default_factory=list)


def _string(value: str) -> bytes:
    raw = value.encode()
    return _STR.pack(len(raw)) + raw


def _read_string(body: bytes, at: int) -> tuple[str, int]:
    (n,) = _STR.unpack_from(body, at)
    at += _STR.size
    return body[at:at + n].decode(), at + n


class Journal:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / JOURNAL
        self.sessions: dict[str, list[tuple[str, int]]] = {}
        self.owed: dict[int, Owed] = {}
        self.sent: dict[tuple[str, int], int] = {}  # (client, id) -> packet id
        self.next_id = 1
        self.owed_bytes = 0
        self.written = 0
        self._fd = -1

    # ------------------------------------------------------------------ reading back

    @classmethod
    def open(cls, directory: Path) -> Journal:
        """Read what an earlier broker left (nothing when new), compact it, and append."""
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        journal = cls(directory)
        with contextlib.suppress(FileNotFoundError):
            raw = json.loads((directory / SESSIONS).read_text())
            journal.sessions = {c: [(t, int(q)) for t, q in subs] for c, subs in raw.items()}
        with contextlib.suppress(FileNotFoundError):
            journal._replay(journal.path.read_bytes())
        journal.compact()
        return journal

    def _replay(self, raw: bytes) -> None:
        at = 0
        while at + _LEN.size <= len(raw):
            (n,) = _LEN.unpack_from(raw, at)
            if at + _LEN.size + n > len(raw):
                break  # a torn tail: the record was never whole, nothing was acknowledged
            body = raw[at + _LEN.size:at + _LEN.size + n]
            at += _LEN.size + n
            try:
                self._apply(body)
            except (struct.error, UnicodeDecodeError, IndexError) as exc:
                raise JournalError(f"{self.path}: a record at byte {at - n} is not "
                                   f"readable ({exc})") from None

    def _apply(self, body: bytes) -> None:
        kind, rest = body[:1], body[1:]
        if kind == b"P":
            jid, topic_n, data_n, count = _PUT.unpack_from(rest)
            at = _PUT.size
            topic = rest[at:at + topic_n].decode()
            at += topic_n
            data = rest[at:at + data_n]
            at += data_n
            clients = set()
            for _ in range(count):
                client, at = _read_string(rest, at)
                clients.add(client)
            self._owe(jid, topic, data, clients)
        elif kind == b"S":
            jid, packet_id = _SENT.unpack_from(rest)
            client, _ = _read_string(rest, _SENT.size)
            if jid in self.owed:
                self.sent[(client, jid)] = packet_id
        elif kind == b"A":
            (jid,) = _ID.unpack_from(rest)
            client, _ = _read_string(rest, _ID.size)
            self._settle(jid, client)
        elif kind == b"X":
            client, _ = _read_string(rest, 0)
            self._drop(client)
        else:
            raise struct.error(f"unknown record type {kind!r}")

    def restored(self) -> dict[str, Restored]:
        """Per session: its subscriptions, what was in flight and what was queued."""
        out = {client: Restored(list(subs)) for client, subs in self.sessions.items()}
        for jid in sorted(self.owed):
            owed = self.owed[jid]
            for client in sorted(owed.clients):
                session = out.setdefault(client, Restored([]))
                packet_id = self.sent.get((client, jid))
                if packet_id is not None and all(p != packet_id for p, *_ in session.in_flight):
                    session.in_flight.append((packet_id, jid, owed.topic, owed.data))
                else:
                    session.queued.append((jid, owed.topic, owed.data))
        return out

    # ------------------------------------------------------------------ state

    def _owe(self, jid: int, topic: str, data: bytes, clients: set[str]) -> None:
        self.owed[jid] = Owed(topic, data, clients)
        self.owed_bytes += len(topic) + len(data) + 32
        self.next_id = max(self.next_id, jid + 1)

    def _settle(self, jid: int, client: str) -> bool:
        owed = self.owed.get(jid)
        if owed is None or client not in owed.clients:
            return False
        owed.clients.discard(client)
        self.sent.pop((client, jid), None)
        if not owed.clients:
            del self.owed[jid]
            self.owed_bytes -= len(owed.topic) + len(owed.data) + 32
        return True

    def _drop(self, client: str) -> None:
        for jid in [j for j, o in self.owed.items() if client in o.clients]:
            self._settle(jid, client)
        self.sessions.pop(client, None)

    # ------------------------------------------------------------------ writing

    def _write(self, body: bytes) -> None:
        record = _LEN.pack(len(body)) + body
        os.write(self._fd, record)
        self.written += len(record)

    def owe(self, topic: str, data: bytes | bytearray, clients: Iterable[str]) -> Journalled:
        """Record a message owed to ``clients``; returns the payload carrying its id."""
        names = sorted(set(clients))
        jid = self.next_id
        payload = journalled(data, jid)
        raw_topic = topic.encode()
        self._write(b"P" + _PUT.pack(jid, len(raw_topic), len(payload), len(names))
                    + raw_topic + payload + b"".join(map(_string, names)))
        self._owe(jid, topic, bytes(payload), set(names))
        self._maybe_compact()
        return payload

    def went_out(self, jid: int, client: str, packet_id: int) -> None:
        """The message went out to ``client`` with ``packet_id`` (recorded once per id)."""
        owed = self.owed.get(jid)
        if owed is None or client not in owed.clients or self.sent.get((client, jid)) == \
                packet_id:
            return
        self.sent[(client, jid)] = packet_id
        self._write(b"S" + _SENT.pack(jid, packet_id) + _string(client))

    def acknowledged(self, jid: int, client: str) -> None:
        if self._settle(jid, client):
            self._write(b"A" + _ID.pack(jid) + _string(client))
            self._maybe_compact()

    def owes(self, client: str) -> bool:
        return client in self.sessions

    def subscribed(self, client: str, subscriptions: list[tuple[str, int]]) -> None:
        """A persistent session's subscriptions now (replaces what ``sessions.json`` said)."""
        if self.sessions.get(client) == subscriptions:
            return
        self.sessions[client] = list(subscriptions)
        self._save_sessions()

    def dropped(self, client: str) -> None:
        if client not in self.sessions and not any(client in o.clients
                                                   for o in self.owed.values()):
            return
        self._write(b"X" + _string(client))
        self._drop(client)
        self._save_sessions()

    def _save_sessions(self) -> None:
        tmp = self.directory / (SESSIONS + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(json.dumps(self.sessions, sort_keys=True))
        os.replace(tmp, self.directory / SESSIONS)

    def _maybe_compact(self) -> None:
        if self.written > max(COMPACT_MIN_BYTES, COMPACT_FACTOR * self.owed_bytes):
            self.compact()

    def compact(self) -> None:
        """Rewrite the journal as what is still owed, and append to that."""
        tmp = self.directory / (JOURNAL + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        self.close()
        self._fd, self.written = fd, 0
        for jid in sorted(self.owed):
            owed = self.owed[jid]
            raw_topic = owed.topic.encode()
            names = sorted(owed.clients)
            self._write(b"P" + _PUT.pack(jid, len(raw_topic), len(owed.data), len(names))
                        + raw_topic + owed.data + b"".join(map(_string, names)))
            for client in names:
                packet_id = self.sent.get((client, jid))
                if packet_id is not None:
                    self._write(b"S" + _SENT.pack(jid, packet_id) + _string(client))
        os.close(fd)
        os.replace(tmp, self.path)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
