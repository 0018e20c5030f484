"""The embedded Kafka's S3 server: only this run's Tansu gets in, and its batch listings are
those S3 gives (keys in order, pages of max-keys with continuation tokens)."""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from ownercare import embedded, embedded_s3

pytestmark = pytest.mark.integration

RECORDS = "clusters/c/topics/t/partitions/0000000000/records/"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[int, str, Path]]:
    key, port = embedded_s3.new_access_key(), embedded.free_port()
    proc = embedded_s3.start_s3(port, tmp_path / "kafka", key, tmp_path / "s3.log")
    try:
        yield port, key, tmp_path / "kafka" / embedded_s3.BUCKET
    finally:
        embedded.stop_process(proc)


def call(port: int, path: str, method: str = "GET", body: bytes | None = None,
         **headers: str) -> tuple[int, bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/{embedded_s3.BUCKET}{path}",
                                     data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_only_requests_with_the_runs_key_and_no_origin_get_in(
    server: tuple[int, str, Path]
) -> None:
    port, key, _bucket = server
    auth = embedded_s3.authorization(key)
    assert call(port, "/x.json", "PUT", b"{}", Authorization=auth)[0] == 200
    assert call(port, "/x.json", Authorization=auth) == (200, b"{}")
    assert call(port, "/x.json")[0] == 403
    assert call(port, "/x.json", Authorization=embedded_s3.authorization("other"))[0] == 403
    assert call(port, "/x.json", Authorization=auth, Origin="https://evil.example")[0] == 403
    assert call(port, "/x.json", "OPTIONS")[0] == 403


def test_batch_listings_page_through_every_key_in_order(
    server: tuple[int, str, Path]
) -> None:
    port, key, bucket = server
    auth = embedded_s3.authorization(key)
    bases = [0, 7, 13, 150, 1999, 2000, 2001, 10**12]
    for base in reversed(bases):
        status, _ = call(port, f"/{RECORDS}{base:020}.batch", "PUT", b"x" * (base % 7 + 1),
                         Authorization=auth)
        assert status == 200
    (bucket / RECORDS / f"{3:020}.batch").write_bytes(b"abc")  # appears between listings
    seen: list[str] = []
    token = ""
    for _ in range(10):
        query = f"?list-type=2&max-keys=3&prefix={RECORDS}" + (
            f"&continuation-token={token}" if token else "")
        status, body = call(port, query, Authorization=auth)
        assert status == 200
        text = body.decode()
        seen += re.findall(r"<Key>([^<]+)</Key>", text)
        assert re.findall(r"<LastModified>([^<]+)</LastModified>", text)
        match = re.search(r"<NextContinuationToken>([^<]+)</NextContinuationToken>", text)
        if match is None:
            assert "<IsTruncated>false</IsTruncated>" in text
            break
        token = match.group(1)
    assert seen == [f"{RECORDS}{base:020}.batch" for base in sorted([*bases, 3])]
    (bucket / RECORDS / f"{7:020}.batch").unlink()  # retention removed one
    _, body = call(port, f"?list-type=2&prefix={RECORDS}", Authorization=auth)
    assert f"{7:020}.batch" not in body.decode()
    assert len(re.findall(r"<Key>", body.decode())) == len(bases)
