"""Which user-supplied URLs the system may fetch: a guard against server-side request forgery.

Two checks, both pure (no network I/O):
- `UrlPolicy.check_url` before every request and redirect: scheme, port, host lists,
  and the address itself when the host is an IP literal (`check_port` and `check_host`
  alone for the mail server, which has no URL);
- `UrlPolicy.check_address` on every address a host name resolves to, applied by
  `PolicyResolver` (and `UrlPolicy.connect`), so the connection goes to exactly the
  addresses that were checked.

Never allowed, whatever the configuration: unspecified, link-local (cloud metadata at
169.254.169.254 included), multicast, broadcast, reserved ranges, and the same
addresses in IPv4-mapped, IPv4-compatible, 6to4 or NAT64 IPv6 form.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from yarl import URL

from shared.errors import PermanentError
from shared.settings import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_NEVER: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(net)
    for net in (
        "0.0.0.0/8",  # "this network", 0.0.0.0 reaches local services
        "169.254.0.0/16",  # link-local, cloud metadata
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, broadcast 255.255.255.255 included
        "::/128",  # unspecified
        "fe80::/10",  # link-local
        "fec0::/10",  # deprecated site-local
        "ff00::/8",  # multicast
    )
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# Names that are always loopback (RFC 6761) or a cloud's metadata service, refused by
# name as their addresses would be: before any lookup, when a link is saved too.
_LOOPBACK_NAMES = ("localhost", "*.localhost")
_METADATA_NAMES = ("metadata.google.internal", "metadata.goog")


class UrlRefused(PermanentError):
    """The URL or an address it leads to is not allowed by the policy."""

    code = "url_refused"
    message = "Ссылка запрещена политикой безопасности"


# A host of numbers only (`0`, `2852039166`, `0251.0376.0251.0376`, `0x7f.1`): an IP
# address in a form some resolvers accept and others do not. No domain ends in a number.
_NUMERIC_HOST = re.compile(r"^(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+))*\.?$")


def parse_url(text: str) -> URL:
    """Parse a user-supplied URL exactly as the HTTP client will; one the client could not
    use (a backslash in the authority, a bad port…) is refused."""
    try:
        url = URL(text, encoded=False)
        url.port  # noqa: B018 (a bad port only shows when read)
    except (ValueError, TypeError) as exc:
        raise UrlRefused("Ссылка записана с ошибкой: HTTP-клиент не сможет её открыть") from exc
    return url


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    # IPv4-compatible (::a.b.c.d, deprecated but still routed by some stacks).
    if int(address) >> 32 == 0 and int(address) > 1:
        return ipaddress.IPv4Address(int(address))
    return None


def _host_matches(host: str, patterns: tuple[str, ...]) -> bool:
    host = host.lower().rstrip(".")
    return any(
        host == pattern or (pattern.startswith("*.") and host.endswith(pattern[1:]))
        for pattern in patterns
    )


@dataclass(frozen=True)
class UrlPolicy:
    """What may be fetched. Empty allow lists mean "no restriction"."""

    schemes: frozenset[str] = frozenset({"http", "https"})
    ports: frozenset[int] = frozenset()
    allow_loopback: bool = False
    allow_private: bool = True
    allow_hosts: tuple[str, ...] = ()
    deny_hosts: tuple[str, ...] = ()
    allow_cidrs: tuple[IPNetwork, ...] = field(default=())
    deny_cidrs: tuple[IPNetwork, ...] = field(default=())
    max_redirects: int = 5

    def check_url(self, url: URL) -> None:
        """Refuse a URL by its scheme, port, host, or literal address."""
        if url.scheme not in self.schemes:
            raise UrlRefused(f"Схема {url.scheme or '(нет)'} не разрешена: нужна http или https")
        if not url.raw_host:
            raise UrlRefused("В ссылке нет имени сервера")
        if url.user is not None or url.password is not None:
            raise UrlRefused("Ссылки с логином и паролем не поддерживаются")
        self.check_port(url.port)
        self.check_host(url.raw_host)

    def check_port(self, port: int | None) -> None:
        """Refuse a port outside the allowed ones."""
        if self.ports and port not in self.ports:
            raise UrlRefused(f"Порт {port} не разрешён")

    def check_host(self, host: str) -> None:
        """Refuse a server (of a URL, or the mail server) by its name or literal address."""
        if _NUMERIC_HOST.match(host.lower()) and not _is_dotted_quad(host):
            raise UrlRefused(f"Адрес {host} записан нестандартно: нужна запись вида 10.0.0.1")
        if _host_matches(host, self.deny_hosts + _METADATA_NAMES):
            raise UrlRefused(f"Сервер {host} запрещён")
        if _host_matches(host, _LOOPBACK_NAMES):
            self.check_address(ipaddress.IPv4Address("127.0.0.1"))
        if self.allow_hosts and not _host_matches(host, self.allow_hosts):
            raise UrlRefused(f"Сервер {host} не входит в список разрешённых")
        try:
            literal = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            return
        self.check_address(literal)

    def check_link(self, text: str) -> URL:
        """Parse a user-supplied link as the HTTP client will and refuse it by this policy
        (when it is saved; every fetch checks again, redirects and resolved addresses too)."""
        url = parse_url(text)
        self.check_url(url)
        return url

    def check_address(self, address: IPAddress | str) -> None:
        """Refuse an address that a request must never reach."""
        ip = ipaddress.ip_address(address) if isinstance(address, str) else address
        if isinstance(ip, ipaddress.IPv6Address):
            if ip.scope_id:
                raise UrlRefused("Адреса IPv6 с зоной не разрешены")
            embedded = _embedded_ipv4(ip)
            if embedded is not None:
                self.check_address(embedded)
        if any(ip in network for network in _NEVER if network.version == ip.version):
            raise UrlRefused(f"Адрес {ip} запрещён")
        if ip.is_loopback and not self.allow_loopback:
            raise UrlRefused(f"Адрес {ip} (loopback) запрещён")
        if any(ip in network for network in self.deny_cidrs if network.version == ip.version):
            raise UrlRefused(f"Адрес {ip} запрещён настройками")
        if self.allow_cidrs and not any(
            ip in network for network in self.allow_cidrs if network.version == ip.version
        ):
            raise UrlRefused(f"Адрес {ip} не входит в разрешённые сети")
        if ip.is_private and not ip.is_loopback and not self.allow_private:
            raise UrlRefused(f"Адрес {ip} из внутренней сети запрещён")

    async def connect(self, host: str, port: int, *, timeout_s: float) -> socket.socket:
        """A TCP connection to a server that is not a URL (the mail server): its port and
        name checked, then its name resolved once and connected to only at the addresses
        that were checked, the first that answers."""
        self.check_port(port)
        self.check_host(host)
        loop = asyncio.get_running_loop()
        resolver = self.resolver()
        async with asyncio.timeout(timeout_s):
            try:
                addresses = await resolver.resolve(host.strip("[]"), port, socket.AF_UNSPEC)
            finally:
                await resolver.close()
            failure: OSError = OSError(f"{host} has no address")
            for address in addresses:
                sock = socket.socket(address["family"], socket.SOCK_STREAM)
                sock.setblocking(False)
                try:
                    await loop.sock_connect(sock, (address["host"], port))
                except OSError as exc:
                    sock.close()
                    failure = exc
                    continue
                return sock
        raise failure

    def resolver(self) -> PolicyResolver:
        """A resolver for aiohttp that only ever returns addresses this policy allows."""
        return PolicyResolver(self)

    def client_session(self, *, user_agent: str) -> aiohttp.ClientSession:
        """An HTTP client whose connections only reach addresses this policy allows.

        Callers still check every URL (and redirect) with `check_url` and never follow
        redirects automatically; no proxy from the environment is used.
        """
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(resolver=self.resolver(), use_dns_cache=False),
            headers={"User-Agent": user_agent},
            trust_env=False,
        )


def _is_dotted_quad(host: str) -> bool:
    try:
        return isinstance(ipaddress.ip_address(host.rstrip(".")), ipaddress.IPv4Address)
    except ValueError:
        return False


class PolicyResolver(AbstractResolver):
    """Resolves once and refuses the host if any of its addresses is not allowed."""

    def __init__(self, policy: UrlPolicy, inner: AbstractResolver | None = None) -> None:
        self._policy = policy
        self._inner = inner or DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """Resolve `host`; every answer must pass the policy (no DNS-rebinding mix)."""
        results = await self._inner.resolve(host, port, family)
        for result in results:
            self._policy.check_address(result["host"])
        return results

    async def close(self) -> None:
        """Release the inner resolver."""
        await self._inner.close()


def parse_networks(values: Iterable[str]) -> tuple[IPNetwork, ...]:
    """Parse CIDR strings (e.g. from settings) into networks."""
    return tuple(ipaddress.ip_network(value, strict=False) for value in values)


def policy_from_settings(settings: Settings) -> UrlPolicy:
    """The fetch policy configured by `ROP_FETCH_*`."""
    return UrlPolicy(
        ports=frozenset(int(port) for port in settings.fetch_ports),
        allow_loopback=settings.fetch_allow_loopback,
        allow_private=settings.fetch_allow_private,
        allow_hosts=tuple(host.lower() for host in settings.fetch_allow_hosts),
        deny_hosts=tuple(host.lower() for host in settings.fetch_deny_hosts),
        allow_cidrs=parse_networks(settings.fetch_allow_cidrs),
        deny_cidrs=parse_networks(settings.fetch_deny_cidrs),
    )
