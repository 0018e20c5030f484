"""The embedded Kafka broker's disk: a local S3 server (localbucket) over a state-dir folder.

Tansu keeps a durable log only in object storage or PostgreSQL, and the wheel ``ownercare
run`` uses has no PostgreSQL engine compiled in, so the embedded stack gives it an S3 endpoint
that stores each object as a plain file under ``<state dir>/kafka/`` (bucket ``tansu``).
localbucket writes every object to a temporary file and renames it into place, so a
``kill -9`` of either process leaves each object whole: old or new, never torn.

localbucket checks no credentials and answers any web page's CORS request. The server here
closes both doors: a request must carry the run's own access key (AWS SigV4's
``Credential=<key>/...``, which Tansu sends on every request) and no ``Origin`` header, so
neither another local user nor a page open in a browser can read or change the log. It also
serves Tansu's per-fetch listings of a partition's batches from an index (``BatchIndex``),
gives object times to the millisecond and bounds localbucket's ETag cache (docs/operations.md,
"The embedded Kafka on disk").
"""

from __future__ import annotations

import base64
import bisect
import logging
import os
import secrets
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections import OrderedDict
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import localbucket

from ownercare.embedded import die_with_parent, ensure_port_free, wait_for_port

log = logging.getLogger(__name__)

BUCKET = "tansu"
KEY_ENV = "OWNERCARE_EMBEDDED_S3_KEY"
REGION = "us-east-1"


def new_access_key() -> str:
    return "oc" + secrets.token_hex(12)


def authorization(access_key: str) -> str:
    """An Authorization header this server accepts (it checks the key, not the signature:
    the key never leaves the state dir and the process environment of its owner)."""
    return (f"AWS4-HMAC-SHA256 Credential={access_key}/20260101/{REGION}/s3/aws4_request, "
            "SignedHeaders=host, Signature=0")


class GuardedHandler(localbucket.S3Handler):  # type: ignore[misc]
    access_key = ""
    # http.server writes a response's headers and body separately: with Nagle's algorithm
    # the body waits for the client's delayed ACK, 40 ms on every request.
    disable_nagle_algorithm = True
    # Buffered: a response's headers and body leave in one write (http.server flushes after
    # each request), not a system call each; they were a fifth of the server's time (py-spy).
    wbufsize = 64 * 1024

    def do_OPTIONS(self) -> None:
        self._refuse("no cross-origin access")

    def _dispatch(self, action: object) -> None:
        if self.headers.get("Origin") is not None:
            self._refuse("no cross-origin access")
            return
        credential = f"Credential={self.access_key}/"
        if not self.access_key or credential not in self.headers.get("Authorization", ""):
            self._refuse("unknown access key")
            return
        super()._dispatch(action)

    def _list_objects_v2(self, bucket: str) -> None:
        q = self.query
        prefix = q.get("prefix", "")
        if (not prefix.endswith(RECORDS_DIR) or q.get("delimiter")
                or q.get("encoding-type") or q.get("fetch-owner")):
            super()._list_objects_v2(bucket)
            return
        self._send_batch_listing(bucket, prefix)

    def _send_batch_listing(self, bucket: str, prefix: str) -> None:
        """One page of a partition's batch objects, from the index (see ``BatchIndex``)."""
        bucket_dir = self._bucket_dir(bucket)
        max_keys = self._max_keys()
        marker = self.query.get("start-after", "")
        token = self.query.get("continuation-token")
        if token is not None:
            try:
                marker = base64.urlsafe_b64decode(token.encode()).decode()[2:]
            except ValueError:
                raise localbucket.S3Error(HTTPStatus.BAD_REQUEST, "InvalidArgument",
                                          "The continuation token provided is incorrect."
                                          ) from None
        names, contents = BATCHES.listing(bucket_dir, prefix)
        after = marker.removeprefix(prefix) if marker.startswith(prefix) else None
        if marker and after is None:  # a marker outside the prefix: all or none come after it
            first = 0 if marker < prefix else len(names)
        else:
            first = bisect.bisect_right(names, after) if after else 0
        page = range(first, min(first + max_keys, len(names)))
        truncated = page.stop < len(names)
        parts = [f'<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult xmlns="'
                 f'{localbucket.S3_NAMESPACE}"><Name>{escape(bucket)}</Name><Prefix>'
                 f"{escape(prefix)}</Prefix><MaxKeys>{max_keys}</MaxKeys><KeyCount>"
                 f"{len(page)}</KeyCount><IsTruncated>{str(truncated).lower()}</IsTruncated>"]
        if token is not None:
            parts.append(f"<ContinuationToken>{escape(token)}</ContinuationToken>")
        if truncated:
            last = f"K:{prefix}{names[page.stop - 1]}"
            next_token = base64.urlsafe_b64encode(last.encode()).decode()
            parts.append(f"<NextContinuationToken>{next_token}</NextContinuationToken>")
        parts += (contents[names[n]] for n in page)
        parts.append("</ListBucketResult>")
        self._send(HTTPStatus.OK, "".join(parts).encode(),
                   {"Content-Type": "application/xml"})

    def _list_entries(self, bucket_dir: Path, prefix: str, delimiter: str, marker: str,
                      marker_is_prefix: bool, max_keys: int) -> tuple[Any, ...]:
        """localbucket's listing, over the prefix's own directory only.

        localbucket walks the whole bucket for every listing, and Tansu lists a partition's
        batches on every fetch: that cost grew with every record the log holds.
        """
        keys: list[tuple[str, Path]] = []
        for directory, _, files in os.walk(bucket_dir / prefix.rpartition("/")[0]):
            for name in files:
                path = Path(directory, name)
                key = path.relative_to(bucket_dir).as_posix()
                if not name.startswith(localbucket.TEMP_PREFIX) and key.startswith(prefix):
                    keys.append((key, path))
        keys.sort(key=lambda item: item[0].encode())
        contents: list[tuple[str, Path]] = []
        common_prefixes: list[str] = []
        last_entry, truncated = "", False
        for key, path in keys:
            if marker and (key.encode() <= marker.encode()
                           or (marker_is_prefix and key.startswith(marker))):
                continue
            index = key.find(delimiter, len(prefix)) if delimiter else -1
            common = key[:index + len(delimiter)] if index >= 0 else ""
            if common and common_prefixes and common_prefixes[-1] == common:
                continue
            if len(contents) + len(common_prefixes) >= max_keys:
                truncated = max_keys > 0
                break
            if common:
                common_prefixes.append(common)
                last_entry = "P:" + common
            else:
                contents.append((key, path))
                last_entry = "K:" + key
        return contents, common_prefixes, truncated, last_entry

    def _refuse(self, why: str) -> None:
        self._send_error(localbucket.S3Error(HTTPStatus.FORBIDDEN, "AccessDenied", why))

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        # One line per request would be thousands a second, and Tansu probes for objects that
        # do not exist yet (404) all the time: refusals and server errors only.
        if len(args) >= 2 and (str(args[1]) == "403" or str(args[1])[:1] == "5"):
            log.warning("s3_request %s", format % args)


RECORDS_DIR = "/records/"


class BatchIndex:
    """The listing entry of each batch object in each partition's ``records/`` directory.

    Tansu lists a partition's batch objects on every fetch, so a listing must cost little
    more than the directory read: batch objects are written once and never change, so each
    is stat'ed and its ``<Contents>`` entry written once, when it first appears; a removed
    one drops out. Kept small (about 400 bytes a batch): the retention window bounds the
    source topics' batches.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._dirs: dict[str, tuple[list[str], dict[str, str]]] = {}

    def listing(self, bucket_dir: Path, prefix: str) -> tuple[list[str], dict[str, str]]:
        """The names under ``prefix`` (sorted) and their listing entries."""
        directory = bucket_dir / prefix
        try:
            names = sorted(e.name for e in os.scandir(directory)
                           if not e.name.startswith(localbucket.TEMP_PREFIX))
        except FileNotFoundError:
            return [], {}
        with self._lock:
            known_names, known = self._dirs.get(prefix, ([], {}))
        if names == known_names:
            return known_names, known
        fresh: dict[str, str] = {}
        for name in names:
            entry = known.get(name)
            if entry is None:
                try:
                    st = (directory / name).stat()
                except FileNotFoundError:
                    continue  # removed meanwhile
                entry = _contents(prefix + name, (st.st_ino, st.st_mtime_ns, st.st_size))
            fresh[name] = entry
        listed = list(fresh)
        with self._lock:
            self._dirs[prefix] = (listed, fresh)
        return listed, fresh


Stat = tuple[int, int, int]  # inode, mtime (ns), size


def _contents(key: str, stat: Stat) -> str:
    # The ETag of a listing is the file's identity, not its MD5: Tansu never compares a
    # batch's, and hashing every new batch would double the disk reads.
    ino, mtime_ns, size = stat
    return (f"<Contents><Key>{escape(key)}</Key><LastModified>"
            f"{iso_timestamp_ms(mtime_ns / 1e9)}</LastModified><ETag>&quot;"
            f"{ino:x}{mtime_ns:x}{size:x}&quot;</ETag><Size>"
            f"{size}</Size><StorageClass>STANDARD</StorageClass></Contents>")


BATCHES = BatchIndex()


class BoundedCache(OrderedDict[str, Any]):
    """A dict that forgets its oldest entries beyond ``size``."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value)
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)


def iso_timestamp_ms(epoch: float) -> str:
    """An object's LastModified to the millisecond (localbucket gives whole seconds).

    Tansu answers ListOffsets(latest) from the batch object listed as modified last: with
    whole seconds, the *first* batch written in the newest second, thousands of records short
    of the end; to the millisecond, the last batch, as its memory engine does.
    """
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def serve(port: int, data_root: Path, access_key: str) -> None:
    """Serve ``data_root`` on 127.0.0.1:port until SIGTERM."""
    import signal

    localbucket.iso_timestamp = iso_timestamp_ms
    # localbucket remembers the ETag of every object it ever wrote or listed, for ever.
    localbucket._etag_cache = BoundedCache(4096)  # noqa: SLF001

    os.umask(0o077)  # the log holds all telemetry: its owner's only, like the state dir
    data_root.mkdir(mode=0o700, parents=True, exist_ok=True)
    GuardedHandler.data_root = data_root.resolve()
    GuardedHandler.access_key = access_key
    server = ThreadingHTTPServer(("127.0.0.1", port), GuardedHandler)
    server.daemon_threads = True

    def stop(*_: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever()
    finally:
        server.server_close()


def start_s3(port: int, data_root: Path, access_key: str,
             log_path: Path | None = None) -> subprocess.Popen[bytes]:
    """Start the S3 server as a child process, wait for it and make sure the bucket exists."""
    ensure_port_free(port, "the embedded Kafka broker's storage (S3 server)")
    data_root.mkdir(mode=0o700, parents=True, exist_ok=True)
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "ownercare.embedded_s3", str(port), str(data_root)],
        stdout=out, stderr=subprocess.STDOUT, preexec_fn=die_with_parent,
        # Like Tansu: Ctrl-C must not stop the storage before the services have committed.
        process_group=0,
        env={**os.environ, KEY_ENV: access_key},
    )
    if not wait_for_port(port, 20):
        proc.kill()
        raise RuntimeError(f"the S3 server did not start listening on port {port} within 20 s")
    create_bucket(port, access_key)
    log.info("s3_started port=%s pid=%s root=%s", port, proc.pid, data_root)
    return proc


def create_bucket(port: int, access_key: str, bucket: str = BUCKET) -> None:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/{bucket}", method="PUT",
        headers={"Authorization": authorization(access_key)})
    try:
        urllib.request.urlopen(request, timeout=10).close()
    except urllib.error.HTTPError as exc:
        if exc.code != HTTPStatus.CONFLICT:  # BucketAlreadyOwnedByYou: a resumed state dir
            raise RuntimeError(f"the S3 server refused to create bucket {bucket}: "
                               f"HTTP {exc.code}") from None


def tansu_env(port: int, access_key: str) -> dict[str, str]:
    """The environment that points Tansu's ``s3://`` engine at the server on ``port``."""
    return {
        "AWS_ENDPOINT": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": access_key,
        "AWS_SECRET_ACCESS_KEY": access_key,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ALLOW_HTTP": "true",
    }


if __name__ == "__main__":
    if len(sys.argv) != 3 or not os.environ.get(KEY_ENV):
        sys.exit(f"usage: {KEY_ENV}=KEY python -m ownercare.embedded_s3 PORT DATA_ROOT")
    logging.basicConfig(level=logging.WARNING)
    serve(int(sys.argv[1]), Path(sys.argv[2]), os.environ[KEY_ENV])
