"""
What one client may take: connections (in all, per client address, per
uid) and messages per second.

Pure bookkeeping with the clock passed in, so every limit is tested with
C{twisted.internet.task.Clock}; the protocol and the HTTP API only ask and
answer (see README.rst, "Limits and protections").
"""

from __future__ import annotations

import ipaddress
import math
import resource
from dataclasses import dataclass
from typing import Iterable

from twisted.internet.interfaces import IReactorTime

from realtime.interfaces import ISessionRegistry

#: seconds a client refused for a connection limit is told to wait
#: (C{Retry-After}): a slot frees only when someone disconnects, so asking
#: again at once would only be refused again
RETRY_AFTER = 10

#: proxies trusted by default: a reverse proxy on this host (nginx in front)
#: then names its clients without configuration, and a local connection
#: without C{X-Forwarded-For} (tools, the benchmark) is not limited per address
LOOPBACK = ("127.0.0.0/8", "::1")

#: peer addresses whose parse L{ProxyTrust} remembers (forgotten all at once
#: when full)
SEEN_ADDRESSES = 4096

#: an IPv6 client is counted by its /64: one subscriber usually holds a
#: whole /64, and could otherwise open a connection from each address in it
IPV6_PREFIX = 64


@dataclass(frozen=True)
class RateLimit:
    """
    C{rate} tokens per second, at most C{burst} saved up.
    """

    rate: float
    burst: float


def parseRate(option: str, text: str) -> RateLimit | None:
    """
    ``R[:BURST]`` -> a L{RateLimit} (C{BURST} defaults to twice C{R}, and at
    least 1); ``0`` -> C{None}, no limit.

    @raise ValueError: naming C{option}, for anything else.
    """
    rate, _, burst = str(text).partition(":")
    try:
        value = float(rate)
        saved = float(burst) if burst else max(1.0, 2 * value)
    except ValueError:
        raise ValueError(f"--{option} wants RATE or RATE:BURST (numbers), not {text!r}") from None
    if not (math.isfinite(value) and math.isfinite(saved)) or value < 0:
        raise ValueError(f"--{option} wants a rate >= 0, not {text!r}")
    if value == 0:
        return None
    if saved < 1:
        raise ValueError(f"--{option} wants a burst >= 1, not {text!r}")
    return RateLimit(value, saved)


class TokenBucket:
    """
    A token bucket: starts full, refills at C{limit.rate} per second up to
    C{limit.burst}; each L{take} spends one token.

    A handful of floats, because every connection that sends holds one.
    """

    __slots__ = ("_rate", "_burst", "_tokens", "_stamp", "_clock")

    def __init__(self, limit: RateLimit, clock: IReactorTime) -> None:
        self._rate = limit.rate
        self._burst = limit.burst
        self._tokens = limit.burst
        self._clock = clock
        self._stamp = clock.seconds()

    def take(self) -> float:
        """
        Spend a token if there is one.

        @return: 0.0 when a token was spent; else the seconds until one will
            be there (nothing is spent).
        """
        now = self._clock.seconds()
        elapsed = now - self._stamp
        tokens = self._tokens
        if elapsed > 0:
            tokens += elapsed * self._rate
            if tokens > self._burst:
                tokens = self._burst
        # a clock set back starts counting again from where it is now
        self._stamp = now
        if tokens >= 1.0:
            self._tokens = tokens - 1.0
            return 0.0
        self._tokens = tokens
        return (1.0 - tokens) / self._rate


def retryAfter(wait: float) -> bytes:
    """
    A C{Retry-After} value (whole seconds, at least 1) for C{wait} seconds.
    """
    return b"%d" % max(1, math.ceil(wait))


def defaultMaxConnections() -> int:
    """
    The process's soft open-file limit minus headroom (a tenth of it,
    between 100 and 1000 descriptors) for listening sockets, the store,
    logs, web requests and the refusals themselves: past the open-file
    limit C{accept} fails and the listening socket spins the reactor.
    """
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft > 1_000_000:
        soft = 1_000_000
    return max(1, soft - min(1000, max(100, soft // 10)))


class ProxyTrust:
    """
    Which peers are proxies whose C{X-Forwarded-For} names the client.
    """

    def __init__(self, networks: Iterable[str]) -> None:
        """
        @param networks: addresses or CIDR networks; C{none} is ignored.
        @raise ValueError: for anything that is neither.
        """
        self.networks = tuple(
            ipaddress.ip_network(network.strip(), strict=False) for network in networks if network.strip() != "none"
        )
        self._seen: dict[str, tuple[bool, str | None]] = {}

    def trusts(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        """
        Whether C{address} is a trusted proxy.
        """
        return any(address in network for network in self.networks)

    def _lookUp(self, host: str) -> tuple[bool, str | None]:
        """
        Whether C{host} is a trusted proxy, and its key (C{None}: not an
        address), remembered: parsing an address costs more than the rest
        of the admission, and most handshakes come from a peer seen before.
        """
        found = self._seen.get(host)
        if found is None:
            address = parseAddress(host)
            found = (False, None) if address is None else (self.trusts(address), addressKey(address))
            if len(self._seen) >= SEEN_ADDRESSES:
                self._seen.clear()
            self._seen[host] = found
        return found

    def clientOf(self, peerHost: str, forwardedFor: str | None) -> str | None:
        """
        The key the client is counted under: its address (an IPv6 one as its
        /64), the right-most address of C{X-Forwarded-For} that is not a
        trusted proxy when the peer is one, or C{None} for a trusted peer
        naming nobody (the proxy itself, a local tool: not counted) or a
        peer without an address (a Unix socket).

        Only the right-most untrusted entry is believed: everything left of
        it was written by the client.
        """
        trusted, key = self._lookUp(peerHost)
        if not trusted:
            return key
        if not forwardedFor:
            return None
        hops = [hop.strip() for hop in forwardedFor.split(",")]
        for hop in reversed(hops):
            if hop:
                trusted, key = self._lookUp(hop)
                if key is None:
                    # garbage a trusted proxy passed on: count it as it is
                    return hop[:64]
                if not trusted:
                    return key
        return None


def parseAddress(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """
    An IP address in C{text} (an IPv4-mapped IPv6 one as IPv4), or C{None}.
    """
    try:
        address = ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def addressKey(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """
    What a client address is counted under.
    """
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.ip_network(f"{address}/{IPV6_PREFIX}", strict=False))
    return str(address)


class LimitExceeded(Exception):
    """
    One more connection would pass a limit.

    @ivar status: the HTTP status to refuse a handshake with.
    @ivar kind: which limit (C{total}, C{address}, C{uid}).
    """

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message


class ConnectionLimits:
    """
    Counts the WebSocket connections admitted, in all and per client
    address, and refuses the one that would pass a limit (the new
    connection, never an established one).  0 means no limit.

    @ivar total: connections admitted and not yet released.
    @ivar refused: refusals by limit (C{total}, C{address}, C{uid}, C{rate}).
    """

    def __init__(self, maxTotal: int = 0, maxPerAddress: int = 0, maxPerUid: int = 0, trust: ProxyTrust | None = None) -> None:
        self.maxTotal = maxTotal
        self.maxPerAddress = maxPerAddress
        self.maxPerUid = maxPerUid
        self.trust = trust or ProxyTrust(LOOPBACK)
        self.total = 0
        self._perAddress: dict[str, int] = {}
        self.refused = {"total": 0, "address": 0, "uid": 0, "rate": 0}

    def admit(self, peerHost: str, forwardedFor: str | None) -> str | None:
        """
        Count one more connection from C{peerHost}.

        @return: the key to L{release} it with (C{None}: not counted per
            address).
        @raise LimitExceeded: 503 over the total, 429 over the address's.
        """
        if self.maxTotal and self.total >= self.maxTotal:
            self.refused["total"] += 1
            raise LimitExceeded(503, "total", "server full: too many connections")
        key = self.trust.clientOf(peerHost, forwardedFor) if self.maxPerAddress else None
        if key is not None:
            count = self._perAddress.get(key, 0)
            if count >= self.maxPerAddress:
                self.refused["address"] += 1
                raise LimitExceeded(429, "address", "too many connections from this address")
            self._perAddress[key] = count + 1
        self.total += 1
        return key

    def release(self, key: str | None) -> None:
        """
        A connection L{admit} counted is gone.
        """
        self.total -= 1
        if key is not None:
            count = self._perAddress[key] - 1
            if count:
                self._perAddress[key] = count
            else:
                del self._perAddress[key]

    def connectionsFrom(self, key: str) -> int:
        """
        Connections counted under C{key}.
        """
        return self._perAddress.get(key, 0)

    def checkUid(self, registry: ISessionRegistry, uid: str) -> None:
        """
        Refuse one more connection for C{uid} if it holds the most allowed.

        @raise LimitExceeded: 429, when it does.
        """
        if self.maxPerUid and len(registry.sessionsOf(uid)) >= self.maxPerUid:
            self.refused["uid"] += 1
            raise LimitExceeded(429, "uid", "too many connections for this uid")
