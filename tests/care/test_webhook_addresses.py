"""The webhook address policy: which resolved addresses a webhook may reach."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from care.webhooks import (
    NON_PUBLIC,
    REFUSED_CATEGORIES,
    IpAddress,
    address_refusal,
    check_addresses,
    parse_networks,
)

addresses = st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6),
                      st.ip_addresses(v=4).map(lambda a: ipaddress.IPv6Address(
                          "::ffff:" + str(a))))


def expected_refused(address: IpAddress) -> bool:
    a = address
    if isinstance(a, ipaddress.IPv6Address) and a.ipv4_mapped is not None:
        a = a.ipv4_mapped
    return (a.is_loopback or a.is_private or a.is_link_local or a.is_multicast
            or a.is_unspecified or a.is_reserved or not a.is_global)


@given(addresses)
def test_the_verdict_is_the_ipaddress_category_rule(address: IpAddress) -> None:
    assert (address_refusal(address) is not None) == expected_refused(address)


@given(addresses, st.integers(min_value=0, max_value=128))
def test_an_allow_listed_address_is_always_accepted(address: IpAddress, prefix: int) -> None:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # what it is judged as, so what is allow-listed
    prefix = min(prefix, address.max_prefixlen)
    network = ipaddress.ip_network(f"{address}/{prefix}", strict=False)
    assert address_refusal(address, (network,)) is None


@pytest.mark.parametrize(("address", "reason"), [
    ("127.0.0.1", "loopback"), ("::1", "loopback"), ("::ffff:127.0.0.1", "loopback"),
    ("10.0.0.1", "private"), ("192.168.1.5", "private"), ("169.254.169.254", "link-local"),
    ("fe80::1", "link-local"), ("224.0.0.1", "multicast"), ("0.0.0.0", "unspecified"),
    ("::", "unspecified"), ("240.0.0.1", "reserved"), ("93.184.215.14", None),
    ("2606:4700::6810:84e5", None), ("::ffff:93.184.215.14", None),
    ("100.64.0.1", "non-public"), ("100.127.255.254", "non-public"),
    ("198.18.0.1", "private"),
])
def test_each_category_is_named(address: str, reason: str | None) -> None:
    refusal = address_refusal(ipaddress.ip_address(address))
    assert refusal == reason
    assert reason in (None, NON_PUBLIC) or reason.replace("-", "_") in REFUSED_CATEGORIES


def test_every_resolved_address_must_pass() -> None:
    assert [str(a) for a in check_addresses("h", ["93.184.215.14"])] == ["93.184.215.14"]
    with pytest.raises(ValueError, match=r"'h' resolves to 10\.0\.0\.1, a private address"):
        check_addresses("h", ["93.184.215.14", "10.0.0.1"])
    with pytest.raises(ValueError, match="has no address"):
        check_addresses("h", [])
    allowed = parse_networks("10.20.0.0/16")
    assert [str(a) for a in check_addresses("h", ["10.20.3.4"], allowed)] == ["10.20.3.4"]
    with pytest.raises(ValueError, match="OWNERCARE_WEBHOOK_ALLOW_NETWORKS"):
        check_addresses("h", ["10.21.0.1"], allowed)


def test_allow_lists_parse_or_say_what_is_wrong() -> None:
    assert [str(n) for n in parse_networks(" 10.20.0.0/16, 192.168.1.5/32,,fd00::/8 ")] == [
        "10.20.0.0/16", "192.168.1.5/32", "fd00::/8"]
    assert parse_networks("") == ()
    for bad in ("10.20.0.1/16", "10.0.0.0/33", "intranet"):
        with pytest.raises(ValueError, match=f"{bad!r} is not a network"):
            parse_networks(bad)
