"""Charge-point credentials: scrypt hashes in an htpasswd-like file."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest import ocpp_credentials
from ingest.ocpp_credentials import CredentialsError


@settings(max_examples=10)  # each check costs a scrypt (~50 ms) on purpose
@given(st.text(min_size=1, max_size=60), st.text(min_size=1, max_size=60))
def test_a_hash_accepts_its_password_and_nothing_else(password: str, other: str) -> None:
    stored = ocpp_credentials.hash_password(password)
    assert ocpp_credentials.verify(stored, password)
    assert ocpp_credentials.verify(stored, other) == (other == password)


def test_add_writes_a_private_file_and_replaces_a_charge_points_password(tmp_path: Path
                                                                         ) -> None:
    path = tmp_path / "ocpp-credentials"
    first = ocpp_credentials.add(path, "CP-1")
    ocpp_credentials.add(path, "CP-2", "given-password-2")
    second = ocpp_credentials.add(path, "CP-1")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = ocpp_credentials.load(path)
    assert sorted(loaded) == ["CP-1", "CP-2"]
    assert ocpp_credentials.verify(loaded["CP-1"], second)
    assert not ocpp_credentials.verify(loaded["CP-1"], first)
    assert ocpp_credentials.verify(loaded["CP-2"], "given-password-2")
    assert first not in path.read_text()
    assert second not in path.read_text()


GOOD = ocpp_credentials.hash_password("x")


@pytest.mark.parametrize(("text", "message"), [
    ("CP-1 " + GOOD, "line 1: expected charger_id:hash"),
    ("# comment\n\nbad id:" + GOOD, "line 3: expected charger_id:hash"),
    ("CP-1:plaintext-password", "line 1: not a scrypt$N$r$p$salt$hash"),
    ("CP-1:scrypt$16384$8$1$!!$!!", "line 1: the password hash has a bad number or base64"),
    ("CP-1:scrypt$1073741824$8$1$" + GOOD.split("$", 4)[4], "out of range"),
    (f"CP-1:{GOOD}\nCP-1:{GOOD}", "line 2: CP-1 is listed twice"),
], ids=["no-colon", "bad-id", "plaintext", "bad-base64", "cost-out-of-range", "twice"])
def test_bad_lines_are_named_with_their_number(text: str, message: str) -> None:
    with pytest.raises(CredentialsError) as caught:
        ocpp_credentials.parse(text, "creds")
    assert message in str(caught.value)


def test_a_missing_file_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CredentialsError, match="cannot read .*nowhere"):
        ocpp_credentials.load(tmp_path / "nowhere")
