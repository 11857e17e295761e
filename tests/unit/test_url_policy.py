from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from denoise_pipeline.adapters.output_copier import CopyError, OutputRefused, UrlPolicy, is_public_address

ALLOW = ("lalals.s3.amazonaws.com", "musicgpt.s3.amazonaws.com", "http://127.0.0.1:8765")


def resolver(addresses: dict[str, list[str]]) -> object:
    def resolve(host: str, port: int) -> Sequence[str]:
        if host not in addresses:
            raise OSError("no such host")
        return addresses[host]

    return resolve


def policy(addresses: dict[str, list[str]] | None = None) -> UrlPolicy:
    default = {"lalals.s3.amazonaws.com": ["52.216.1.1"], "musicgpt.s3.amazonaws.com": ["52.216.2.2"]}
    table = default if addresses is None else addresses
    return UrlPolicy(ALLOW, resolver=resolver(table))  # type: ignore[arg-type]


def test_allowlisted_https_host_with_public_addresses_passes() -> None:
    policy().check_resolved("https://lalals.s3.amazonaws.com/conversions/x_noise.wav?X-Amz-Signature=abc")


def test_explicit_origin_is_allowed_exactly() -> None:
    policy().check_resolved("http://127.0.0.1:8765/files/x.wav")
    with pytest.raises(OutputRefused):
        policy().check("http://127.0.0.1:8766/files/x.wav")
    with pytest.raises(OutputRefused):
        policy().check("https://127.0.0.1:8765/files/x.wav")


@pytest.mark.parametrize(
    "address", ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.0.1", "169.254.169.254", "::1", "fd00::1", "0.0.0.0"]
)
def test_allowlisted_host_resolving_to_a_private_address_is_refused(address: str) -> None:
    with pytest.raises(OutputRefused, match="non-public"):
        policy({"lalals.s3.amazonaws.com": ["52.216.1.1", address]}).check_resolved(
            "https://lalals.s3.amazonaws.com/x.wav"
        )


def test_unresolvable_host_is_a_retryable_copy_error() -> None:
    with pytest.raises(CopyError) as caught:
        policy({}).check_resolved("https://lalals.s3.amazonaws.com/x.wav")
    assert not isinstance(caught.value, OutputRefused)


@given(st.text(max_size=80))
def test_arbitrary_text_passes_only_when_it_is_an_allowlisted_url(url: str) -> None:
    try:
        policy().check(url)
    except OutputRefused:
        return
    assert url.lower().startswith(
        ("https://lalals.s3.amazonaws.com", "https://musicgpt.s3.amazonaws.com", "http://127.0.0.1:8765")
    )


# --- the address verdict ---------------------------------------------------------------------------------------------

ADDRESSES = [
    # public
    ("52.216.1.1", True),
    ("8.8.8.8", True),
    ("1.1.1.1", True),
    ("2600:1f18:4000::1", True),
    ("2a00:1450:4001:80b::200e", True),
    ("::ffff:52.216.1.1", True),  # IPv4-mapped public
    ("64:ff9b::808:808", True),  # NAT64 of 8.8.8.8
    ("2002:808:808::1", True),  # 6to4 of 8.8.8.8
    ("2001:0:4136:e378:8000:63bf:f7f7:f7f7", True),  # Teredo: server 65.54.227.120, client 8.8.8.8
    # IPv4, not public
    ("127.0.0.1", False),
    ("10.1.2.3", False),
    ("172.16.0.1", False),
    ("192.168.0.1", False),
    ("169.254.169.254", False),  # link-local: the instance metadata service
    ("100.64.0.1", False),  # CGNAT (shared address space)
    ("0.0.0.0", False),
    ("224.0.0.1", False),  # multicast
    ("255.255.255.255", False),
    ("240.0.0.1", False),  # reserved
    ("192.0.2.1", False),  # documentation
    ("198.18.0.1", False),  # benchmarking
    # IPv6, not public
    ("::1", False),
    ("::", False),
    ("fe80::1", False),
    ("fe80::1%eth0", False),
    ("fc00::1", False),
    ("fd12:3456::1", False),
    ("fec0::1", False),  # site-local (deprecated)
    ("ff0e::1", False),  # global-scope multicast
    ("2001:db8::1", False),
    ("100::1", False),  # discard-only
    ("4000::1", False),  # not allocated
    # IPv6 carrying a non-public IPv4
    ("::ffff:127.0.0.1", False),
    ("::ffff:169.254.169.254", False),
    ("::127.0.0.1", False),  # IPv4-compatible
    ("::10.0.0.1", False),
    ("64:ff9b::7f00:1", False),  # NAT64 of 127.0.0.1
    ("64:ff9b::a9fe:a9fe", False),  # NAT64 of 169.254.169.254
    ("64:ff9b:1::808:808", False),  # NAT64 local-use: the operator's translator, whatever it carries
    ("2002:7f00:1::", False),  # 6to4 of 127.0.0.1
    ("2002:a00:1::1", False),  # 6to4 of 10.0.0.1
    ("2001:0:4136:e378:8000:63bf:80ff:fffe", False),  # Teredo client 127.0.0.1
    ("2001:0:a00:1:8000:63bf:f7f7:f7f7", False),  # Teredo server 10.0.0.1
]


@pytest.mark.parametrize(("address", "public"), ADDRESSES)
def test_address_verdicts(address: str, public: bool) -> None:
    assert is_public_address(ipaddress.ip_address(address)) is public


def _mapped(v4: int, _: int) -> int:
    return 0xFFFF << 32 | v4


def _compatible(v4: int, _: int) -> int:
    return v4


def _nat64(v4: int, _: int) -> int:
    return int(ipaddress.IPv6Address("64:ff9b::")) | v4


def _sixtofour(v4: int, low: int) -> int:
    return 0x2002 << 112 | v4 << 80 | low & (1 << 80) - 1


def _teredo_client(v4: int, low: int) -> int:
    server = int(ipaddress.IPv4Address("65.54.227.120"))
    return 0x2001 << 112 | server << 64 | (low & 0xFFFF_FFFF) << 32 | v4 ^ 0xFFFF_FFFF


def _teredo_server(v4: int, low: int) -> int:
    client = int(ipaddress.IPv4Address("8.8.4.4"))
    return 0x2001 << 112 | v4 << 64 | (low & 0xFFFF_FFFF) << 32 | client ^ 0xFFFF_FFFF


@given(
    st.ip_addresses(v=4),
    st.sampled_from([_mapped, _compatible, _nat64, _sixtofour, _teredo_client, _teredo_server]),
    st.integers(min_value=0, max_value=(1 << 80) - 1),
)
def test_an_embedded_ipv4_gets_the_ipv4_verdict(v4: ipaddress.IPv4Address, form: Any, low: int) -> None:
    v6 = ipaddress.IPv6Address(form(int(v4), low))
    assert is_public_address(v6) is is_public_address(v4), v6


@given(st.ip_addresses(v=4), st.integers(min_value=0, max_value=(1 << 80) - 1))
def test_nat64_local_use_is_never_public(v4: ipaddress.IPv4Address, low: int) -> None:
    base = int(ipaddress.IPv6Address("64:ff9b:1::"))
    for embedded in (base | int(v4), base | (low & (1 << 80) - 1)):
        assert not is_public_address(ipaddress.IPv6Address(embedded))


# --- resolving once: the target carries the checked addresses --------------------------------------------------------


class CountingResolver:
    """Answers from a list of tables, one per call (DNS that changes between calls), and counts the calls."""

    def __init__(self, *answers: dict[str, list[str]]) -> None:
        self._answers = list(answers)
        self.calls: list[str] = []

    def __call__(self, host: str, port: int) -> Sequence[str]:
        self.calls.append(host)
        table = self._answers[min(len(self.calls), len(self._answers)) - 1]
        return table[host]


def test_resolve_returns_every_checked_address_in_order_and_resolves_once() -> None:
    dns = CountingResolver({"lalals.s3.amazonaws.com": ["52.216.1.1", "2600:1f18::1"]}, {"lalals.s3.amazonaws.com": []})
    target = UrlPolicy(ALLOW, resolver=dns).resolve("https://LALALS.s3.amazonaws.com./x.wav?sig=1")
    assert target.addresses == ("52.216.1.1", "2600:1f18::1")
    assert (target.scheme, target.host, target.port, target.host_header) == (
        "https",
        "lalals.s3.amazonaws.com",
        443,
        "lalals.s3.amazonaws.com",
    )
    assert dns.calls == ["lalals.s3.amazonaws.com"]


def test_a_later_answer_cannot_change_a_resolved_target() -> None:
    dns = CountingResolver({"lalals.s3.amazonaws.com": ["52.216.1.1"]}, {"lalals.s3.amazonaws.com": ["127.0.0.1"]})
    policy = UrlPolicy(ALLOW, resolver=dns)
    target = policy.resolve("https://lalals.s3.amazonaws.com/x.wav")
    assert target.addresses == ("52.216.1.1",)
    with pytest.raises(OutputRefused, match="non-public"):  # the next resolution is checked again, on its own
        policy.resolve("https://lalals.s3.amazonaws.com/x.wav")


def test_explicit_origin_with_a_name_is_resolved_and_pinned_without_the_address_check() -> None:
    dns = CountingResolver({"outputs.test": ["127.0.0.1"]})
    target = UrlPolicy(["https://outputs.test:8443"], resolver=dns).resolve("https://outputs.test:8443/f.wav")
    assert (target.addresses, target.host_header) == (("127.0.0.1",), "outputs.test:8443")


def test_an_ip_literal_is_not_resolved() -> None:
    dns = CountingResolver({})
    target = UrlPolicy(["http://127.0.0.1:8765"], resolver=dns).resolve("http://127.0.0.1:8765/f")
    assert target.addresses == ("127.0.0.1",)
    with pytest.raises(OutputRefused, match="non-public"):
        UrlPolicy(["::1"], resolver=dns).resolve("https://[::1]/f")
    assert dns.calls == []


def test_an_injected_predicate_decides_which_addresses_a_bare_host_may_use() -> None:
    dns = CountingResolver({"outputs.test": ["127.0.0.1"]})
    loopback_only = UrlPolicy(["outputs.test"], resolver=dns, address_allowed=lambda ip: ip.is_loopback)
    assert loopback_only.resolve("https://outputs.test/f").addresses == ("127.0.0.1",)
    with pytest.raises(OutputRefused):
        UrlPolicy(["outputs.test"], resolver=dns).resolve("https://outputs.test/f")


@pytest.mark.parametrize("answer", ["::ffff:10.0.0.1", "64:ff9b::a9fe:a9fe", "2002:c0a8:1::1", "not-an-address"])
def test_embedded_and_unusable_answers_are_refused(answer: str) -> None:
    with pytest.raises(OutputRefused):
        policy({"lalals.s3.amazonaws.com": [answer]}).resolve("https://lalals.s3.amazonaws.com/x.wav")
