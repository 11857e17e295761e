"""Which output URLs may be fetched, and at which addresses: the URL half of the copier's SSRF defence.

Allowlist entries come in two forms (setting OUTPUT_HOST_ALLOWLIST):
- a bare host (`lalals.s3.amazonaws.com`): https on port 443 only, and every address it resolves to must be public;
- an explicit origin (`http://127.0.0.1:8765`): exactly that scheme, host and port. Writing an origin down is the
  operator's consent to reach it, which is how the local stack lets its provider serve outputs over loopback.

`UrlPolicy.resolve` answers a `Target`: the host name (for the Host header, TLS SNI and the certificate check) and the
addresses it resolved to, all of them checked. The copier connects to one of those addresses and never resolves the
name again, so DNS that changes between the check and the connection (rebinding) cannot redirect the download.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, IPv6Network
from urllib.parse import urlsplit

IPAddress = IPv4Address | IPv6Address
Resolver = Callable[[str, int], Sequence[str]]
AddressCheck = Callable[[IPAddress], bool]


class CopyError(Exception):
    """The copy did not finish; worth another attempt (connection cut, 5xx, 404, timeout)."""


class OutputRefused(CopyError):
    """The URL is not one we will ever fetch (scheme, host, port, address or encoding); retrying cannot help."""


def resolve_addresses(host: str, port: int) -> list[str]:
    """The host's addresses in getaddrinfo's order (the system's RFC 6724 preference), each once."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


# IPv6 forms that carry an IPv4 address and, through a translator, a relay or the host's own stack, reach it.
_IPV4_MAPPED = IPv6Network("::ffff:0:0/96")
_IPV4_COMPATIBLE = IPv6Network("::/96")  # deprecated (RFC 4291), still routed to the IPv4 address by some stacks
_NAT64_WELL_KNOWN = IPv6Network("64:ff9b::/96")  # RFC 6052: the IPv4 address is the last 32 bits
# RFC 8215: the operator picks the prefix length inside this /48, so where the IPv4 address sits is unknowable here;
# it is a private translator's space and is refused whatever it carries.
_NAT64_LOCAL_USE = IPv6Network("64:ff9b:1::/48")


def is_public_address(address: IPAddress) -> bool:
    """True only for a globally reachable unicast address.

    An IPv6 address that embeds IPv4 addresses (IPv4-mapped, IPv4-compatible, NAT64 well-known prefix, 6to4, Teredo
    server and client) gets their verdict, so `::ffff:127.0.0.1` or `2002:a00:1::` is as private as 127.0.0.1 or
    10.0.0.1. Everything else follows `ipaddress`: not global, or multicast, reserved, link- or site-local, loopback,
    unspecified or private (which covers CGNAT 100.64/10, documentation, benchmarking and the IANA special ranges).
    """
    if isinstance(address, IPv6Address):
        if address in _NAT64_LOCAL_USE:
            return False
        embedded: tuple[IPv4Address, ...] = ()
        if address in _IPV4_MAPPED or address in _IPV4_COMPATIBLE or address in _NAT64_WELL_KNOWN:
            embedded = (IPv4Address(int(address) & 0xFFFF_FFFF),)
        elif address.sixtofour is not None:
            embedded = (address.sixtofour,)
        elif address.teredo is not None:
            embedded = address.teredo  # (server, client); the client is stored XOR-obfuscated, ipaddress undoes that
        if embedded:
            return all(is_public_address(inner) for inner in embedded)
        if address.is_site_local:
            return False
    return address.is_global and not (
        address.is_multicast
        or address.is_reserved
        or address.is_link_local
        or address.is_loopback
        or address.is_unspecified
        or address.is_private
    )


@dataclass(frozen=True)
class _Origin:
    """Scheme, host and port: what an allowlist entry names."""

    scheme: str
    host: str
    port: int


@dataclass(frozen=True)
class Target:
    """A URL the policy accepted: the name to present and the checked addresses to connect to."""

    url: str
    scheme: str
    host: str  # lower case, no trailing dot: the Host header, TLS SNI and certificate name
    port: int
    addresses: tuple[str, ...]  # every one checked (or under an explicit origin's consent), in preference order

    @property
    def host_header(self) -> str:
        """What an HTTP client puts in `Host` for this URL (the port only when it is not the scheme's default)."""
        name = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return name if self.port == default else f"{name}:{self.port}"


def _origin(url: str) -> _Origin:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError as exc:
        raise OutputRefused(f"invalid port in output URL: {exc}") from exc
    if scheme not in {"http", "https"} or not parts.hostname:
        raise OutputRefused(f"not an http(s) URL: scheme {scheme!r}")
    if parts.username or parts.password:
        raise OutputRefused("credentials in output URL")
    return _Origin(scheme, parts.hostname.lower().rstrip("."), port or (443 if scheme == "https" else 80))


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


class UrlPolicy:
    def __init__(
        self,
        allowlist: Sequence[str],
        resolver: Resolver = resolve_addresses,
        *,
        address_allowed: AddressCheck = is_public_address,
    ) -> None:
        """`address_allowed` decides which addresses a bare allowlisted host may resolve to (tests widen it)."""
        self._hosts: set[str] = set()
        self._origins: set[_Origin] = set()
        for entry in allowlist:
            if "://" in entry:
                self._origins.add(_origin(entry))
            else:
                self._hosts.add(entry.lower().rstrip("."))
        self._resolver = resolver
        self._address_allowed = address_allowed

    def check(self, url: str) -> None:
        """Static checks (no network): scheme, host and port against the allowlist."""
        self._classify(url)

    def check_resolved(self, url: str) -> None:
        """Static checks plus DNS: a bare allowlisted host must not resolve to a non-public address."""
        self.resolve(url)

    def resolve(self, url: str) -> Target:
        """The URL's target with its addresses, resolved once and all checked; raises OutputRefused or CopyError
        (the name does not resolve now: worth another attempt)."""
        origin, explicit = self._classify(url)
        addresses = self._addresses(origin)
        if not explicit:
            for address in addresses.values():
                if not self._address_allowed(address):
                    raise OutputRefused(f"{origin.host} resolves to a non-public address ({address})")
        return Target(url, origin.scheme, origin.host, origin.port, tuple(addresses))

    def _addresses(self, origin: _Origin) -> dict[str, IPAddress]:
        literal = _literal(origin.host)
        if literal is not None:
            return {origin.host: literal}
        try:
            answers = self._resolver(origin.host, origin.port)
        except OSError as exc:
            raise CopyError(f"cannot resolve {origin.host}: {exc}") from exc
        if not answers:
            raise CopyError(f"{origin.host} resolves to nothing")
        addresses: dict[str, IPAddress] = {}
        for answer in answers:
            address = _literal(answer)
            if address is None:
                raise OutputRefused(f"{origin.host} resolves to something that is not an address ({answer!r})")
            addresses[answer] = address
        return addresses

    def _classify(self, url: str) -> tuple[_Origin, bool]:
        origin = _origin(url)
        if origin in self._origins:
            return origin, True
        if origin.scheme != "https":
            raise OutputRefused(f"only https output URLs are allowed, got {origin.scheme}://{origin.host}")
        if origin.host not in self._hosts or origin.port != 443:
            raise OutputRefused(f"output host {origin.host}:{origin.port} is not on the allowlist")
        return origin, False
