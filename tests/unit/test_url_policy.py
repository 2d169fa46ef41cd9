"""The URL policy over a table of addresses and URLs, with no network I/O at all."""

from __future__ import annotations

import socket

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from shared.url_policy import PolicyResolver, UrlPolicy, UrlRefused, parse_networks

DEFAULT = UrlPolicy()
LOOPBACK_OK = UrlPolicy(allow_loopback=True)

NEVER = [
    "0.0.0.0",
    "0.1.2.3",
    "169.254.169.254",
    "169.254.0.1",
    "224.0.0.1",
    "239.255.255.250",
    "255.255.255.255",
    "240.0.0.1",
    "::",
    "fe80::1",
    "ff02::1",
    "::ffff:169.254.169.254",
    "::ffff:0.0.0.0",
    "::ffff:224.0.0.1",
    "::169.254.169.254",
    "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
]
LOOPBACK = ["127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1", "64:ff9b::7f00:1"]
PRIVATE = ["10.0.0.1", "172.16.5.4", "192.168.1.10", "fd00::1", "::ffff:10.1.2.3"]
PUBLIC = ["8.8.8.8", "93.184.216.34", "2001:4860:4860::8888"]


@pytest.mark.parametrize("address", NEVER)
@pytest.mark.parametrize(
    "policy", [DEFAULT, LOOPBACK_OK, UrlPolicy(allow_cidrs=parse_networks(["0.0.0.0/0", "::/0"]))]
)
def test_never_allowed_whatever_the_configuration(policy: UrlPolicy, address: str) -> None:
    with pytest.raises(UrlRefused):
        policy.check_address(address)


@pytest.mark.parametrize("address", LOOPBACK)
def test_loopback_only_when_allowed(address: str) -> None:
    with pytest.raises(UrlRefused):
        DEFAULT.check_address(address)
    LOOPBACK_OK.check_address(address)


@pytest.mark.parametrize("address", PRIVATE)
def test_private_ranges_allowed_by_default_and_can_be_denied(address: str) -> None:
    DEFAULT.check_address(address)
    with pytest.raises(UrlRefused):
        UrlPolicy(allow_private=False).check_address(address)


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_are_allowed(address: str) -> None:
    DEFAULT.check_address(address)


def test_cidr_lists() -> None:
    policy = UrlPolicy(
        allow_cidrs=parse_networks(["10.0.0.0/8"]), deny_cidrs=parse_networks(["10.9.0.0/16"])
    )
    policy.check_address("10.1.2.3")
    for address in ("10.9.1.1", "192.168.1.1", "8.8.8.8"):
        with pytest.raises(UrlRefused):
            policy.check_address(address)


@pytest.mark.parametrize(
    "url",
    [
        "ftp://files.example/a.mp3",
        "file:///etc/passwd",
        "gopher://127.0.0.1:6379/_INFO",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:169.254.169.254]/",
        "http://[fe80::1%25eth0]/",
        "http://0.0.0.0:8080/",
        "http://127.0.0.1/a.mp3",
        "http://[::1]/a.mp3",
        "http://user:pass@files.example/a.mp3",
        "http:///a.mp3",
    ],
)
def test_refused_urls(url: str) -> None:
    with pytest.raises(UrlRefused):
        DEFAULT.check_url(URL(url))


def test_ports_and_host_lists() -> None:
    policy = UrlPolicy(
        ports=frozenset({80, 443}),
        allow_hosts=("files.example", "*.crm.example"),
        deny_hosts=("evil.crm.example",),
    )
    policy.check_url(URL("https://files.example/a.mp3"))
    policy.check_url(URL("http://a.b.crm.example/a.mp3"))
    for url in (
        "https://files.example:8443/a.mp3",
        "https://other.example/a.mp3",
        "https://evil.crm.example/a.mp3",
        "https://EVIL.crm.example./a.mp3",
        "https://crm.example.attacker.net/a.mp3",
    ):
        with pytest.raises(UrlRefused):
            policy.check_url(URL(url))


@pytest.mark.parametrize(
    "host", ["localhost", "mail.localhost.", "metadata.google.internal", "METADATA.goog", "0"]
)
def test_names_refused_before_any_lookup(host: str) -> None:
    with pytest.raises(UrlRefused):
        DEFAULT.check_host(host)
    with pytest.raises(UrlRefused):
        DEFAULT.check_url(URL(f"http://{host}/hook"))


def test_a_mail_server_s_host_and_port() -> None:
    policy = UrlPolicy(ports=frozenset({587}), deny_hosts=("*.evil.example",))
    policy.check_port(587)
    policy.check_host("smtp.company.ru")
    with pytest.raises(UrlRefused):
        policy.check_port(25)
    for host in ("relay.evil.example", "[::ffff:169.254.169.254]", "2852039166"):
        with pytest.raises(UrlRefused):
            policy.check_host(host)
    LOOPBACK_OK.check_host("localhost")


class FixedResolver(AbstractResolver):
    """Answers from a table: what a DNS server would say, without asking one."""

    def __init__(self, answers: list[str]) -> None:
        self.answers = answers

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            {
                "hostname": host,
                "host": answer,
                "port": port,
                "family": family,
                "proto": 0,
                "flags": 0,
            }
            for answer in self.answers
        ]

    async def close(self) -> None:
        pass


async def test_resolver_refuses_a_name_that_points_inside() -> None:
    resolver = PolicyResolver(DEFAULT, FixedResolver(["93.184.216.34", "169.254.169.254"]))
    with pytest.raises(UrlRefused):
        await resolver.resolve("rebind.example", 80)


async def test_resolver_returns_checked_addresses() -> None:
    resolver = PolicyResolver(DEFAULT, FixedResolver(["10.28.0.5"]))
    (result,) = await resolver.resolve("files.internal", 80)
    assert result["host"] == "10.28.0.5"
