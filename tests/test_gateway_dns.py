"""The gateway finds its hosts in DNS, as the DaemonSet's headless Service has them, served by a real dnsmasq."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from tests.browser import chromium
from tests.conftest import OPERATOR_TOKEN, wait_for
from tests.conftest import test_settings as host_settings
from tests.dnsmasq import dnsmasq
from tests.gateway_cluster import CONTROL_PLANE, GATEWAY_TOKEN, SOURCE
from tests.test_console import decoded_more_than
from tests.test_gateway import session_ids
from tests.test_signed_links import REVOKED_WITHIN, key_files
from vgpustream.api.app import create_app
from vgpustream.api.state import REGISTRY
from vgpustream.errors import VgpuStreamError
from vgpustream.gateway.app import create_gateway
from vgpustream.gateway.settings import GatewaySettings
from vgpustream.testing.server import free_port

SERVICE = "vgpustream.test"
PICKED_UP_WITHIN = 10.0
"""How soon a host that comes or goes in DNS is a node of the gateway's, or no longer one (issue #27)."""


async def host(aiohttp_server, tmp_path: Path, name: str, address: str, port: int, **overrides) -> TestServer:
    """A host named `name` listening on `address`:`port` (the same port on every host, as a DaemonSet's), which
    it offers viewers too (as the DaemonSet's --host-address, the node's address)."""
    settings = host_settings(tmp_path / name, source=SOURCE, node_name=name, host_address=(address,), **overrides)
    return await aiohttp_server(create_app(settings), host=address, port=port)


async def gateway_of(aiohttp_server, dns_server_port: int, **overrides) -> TestServer:
    server = f"127.0.0.1:{dns_server_port}"
    tokens = {"operator_token": GATEWAY_TOKEN, "host_token": OPERATOR_TOKEN}
    settings = GatewaySettings(dns_name=SERVICE, dns_server=server, **tokens, **overrides)
    return await aiohttp_server(create_gateway(settings))


async def node_names(client: aiohttp.ClientSession, gateway: TestServer) -> list[str]:
    async with client.get(gateway.make_url("/api/v1/sessions")) as response:
        assert response.status == 200
        return [node["name"] for node in (await response.json())["nodes"]]


async def until_nodes(client: aiohttp.ClientSession, gateway: TestServer, expected: list[str]) -> None:
    """Until the gateway's nodes are `expected`; AssertionError after PICKED_UP_WITHIN seconds."""
    for _ in range(int(PICKED_UP_WITHIN / 0.25)):
        if await node_names(client, gateway) == expected:
            return
        await asyncio.sleep(0.25)
    raise AssertionError(f"the nodes are {await node_names(client, gateway)}, not {expected}")


async def test_hosts_come_and_go_with_the_headless_service_s_records(aiohttp_server, tmp_path):
    port, dns_port = free_port(), free_port()
    hosts = {
        name: await host(aiohttp_server, tmp_path, name, address, port)
        for name, address in (("gpu-host-1", "127.0.0.2"), ("gpu-host-2", "127.0.0.3"), ("gpu-host-3", "127.0.0.4"))
    }
    with dnsmasq(tmp_path / "dns", dns_port) as records:
        records.set(SERVICE, "127.0.0.2")
        gateway = await gateway_of(aiohttp_server, dns_port, dns_port=port)  # the default --dns-interval
        async with aiohttp.ClientSession(headers=CONTROL_PLANE) as client:
            assert await node_names(client, gateway) == ["gpu-host-1"], "the hosts DNS has at start"
            records.set(SERVICE, "127.0.0.2", "127.0.0.3", "127.0.0.4")
            await until_nodes(client, gateway, ["gpu-host-1", "gpu-host-2", "gpu-host-3"])
            body = {"id": "vm-3", "source": SOURCE, "node": "gpu-host-3"}
            async with client.post(gateway.make_url("/api/v1/sessions"), json=body) as response:
                assert response.status == 201, await response.text()
            assert "vm-3" in session_ids(hosts["gpu-host-3"]), "made on the host DNS found under that node's name"
            async with client.post(gateway.make_url("/api/v1/sessions/vm-3/tokens"), json={}) as response:
                assert response.status == 201, "a host called at its --host-address makes links (the gateway's)"
            records.set(SERVICE, "127.0.0.3", "127.0.0.4")
            await until_nodes(client, gateway, ["gpu-host-2", "gpu-host-3"])
            body = {"id": "vm-1", "source": SOURCE, "node": "gpu-host-1"}
            async with client.post(gateway.make_url("/api/v1/sessions"), json=body) as response:
                assert (response.status, (await response.json())["error"]["message"]) == (
                    404,
                    "no node named 'gpu-host-1' in the cluster (nodes: gpu-host-2, gpu-host-3)",
                )
            records.set(SERVICE)
            await until_nodes(client, gateway, [])


async def test_srv_records_give_each_host_its_port_and_a_silent_dns_server_changes_nothing(
    aiohttp_server, tmp_path, caplog
):
    ports, dns_port = (free_port(), free_port(), free_port()), free_port()
    await host(aiohttp_server, tmp_path, "gpu-host-1", "127.0.0.2", ports[0])
    await host(aiohttp_server, tmp_path, "gpu-host-2", "127.0.0.3", ports[1])
    await host(aiohttp_server, tmp_path, "gpu-host-9", "127.0.0.4", ports[2], operator_token="another-token")
    srv = tuple(f"_http._tcp.{SERVICE},h{i}.{SERVICE},{port}" for i, port in enumerate(ports, 1))
    caplog.set_level(logging.INFO, logger="vgpustream.gateway.dns")
    with dnsmasq(tmp_path / "dns", dns_port, srv) as records:
        for i, address in enumerate(("127.0.0.2", "127.0.0.3", "127.0.0.4"), 1):
            records.set(f"h{i}.{SERVICE}", address)
        records.set(SERVICE, "127.0.0.9")  # A records that the SRV records take precedence over
        gateway = await gateway_of(aiohttp_server, dns_port, dns_interval=0.2)
        async with aiohttp.ClientSession(headers=CONTROL_PLANE) as client:
            assert await node_names(client, gateway) == ["gpu-host-1", "gpu-host-2"]
            assert f"the host at http://127.0.0.4:{ports[2]} does not say its node yet" in caplog.text, (
                "a host that does not take the hosts' token names no node, and is asked again later"
            )
    await wait_for(
        lambda: f"dns discovery: no answer for {SERVICE} (" in caplog.text, what="a look at DNS without answer"
    )
    async with aiohttp.ClientSession(headers=CONTROL_PLANE) as client:
        assert await node_names(client, gateway) == ["gpu-host-1", "gpu-host-2"], "a DNS blip empties no cluster"


def test_dns_settings_refuse_what_cannot_work():
    tokens = {"operator_token": GATEWAY_TOKEN, "host_token": OPERATOR_TOKEN}
    cases = {
        (("node", ("a=http://h:1",)), ("dns_name", SERVICE)): (
            "name the hosts with --node NAME=URL, or find them with --dns-name: one of the two"
        ),
        (): "name the hosts with --node NAME=URL, or find them with --dns-name: one of the two",
        (("dns_name", "not a name"),): "--dns-name 'not a name' must be a DNS name",
        (("dns_name", SERVICE), ("dns_server", "dns.example:53")): (
            "--dns-server 'dns.example:53' must be ADDRESS or ADDRESS:PORT"
        ),
        (("dns_name", SERVICE), ("dns_port", 0)): "--dns-port must be a TCP port, 1..65535",
        (("dns_name", SERVICE), ("dns_interval", 0)): "dns interval must be within 0..300 seconds",
    }
    for given, message in cases.items():
        with pytest.raises(VgpuStreamError) as refused:
            GatewaySettings(**dict(given), **tokens)
        assert refused.value.message == message
    assert GatewaySettings(dns_name=SERVICE, dns_server="[::1]:5353", **tokens).dns_server_address == ("::1", 5353)
    with pytest.raises(VgpuStreamError, match="node name 'GPU host' must be a DNS name such as gpu-host-7"):
        host_settings(Path("state"), node_name="GPU host")


@pytest.mark.browser
async def test_a_signed_console_link_of_a_dns_found_cluster_plays_in_chromium_until_revoked_at_a_gateway(
    aiohttp_server, tmp_path
):
    """Three hosts found in DNS by two gateways: a session made on a named host through one, its signed console
    link from the other plays in Chromium (media straight from the host), and a revocation at the first cuts it
    within REVOKED_WITHIN."""
    private, public = key_files(tmp_path, "gateway")
    port, dns_port = free_port(), free_port()
    addresses = {"gpu-host-1": "127.0.0.2", "gpu-host-2": "127.0.0.3", "gpu-host-3": "127.0.0.4"}
    hosts = {
        name: await host(aiohttp_server, tmp_path, name, address, port, gateway_key_file=public)
        for name, address in addresses.items()
    }
    with dnsmasq(tmp_path / "dns", dns_port) as records:
        records.set(SERVICE, *addresses.values())
        gateways = [await gateway_of(aiohttp_server, dns_port, dns_port=port, signing_key_file=private) for _ in "12"]
        async with aiohttp.ClientSession(headers=CONTROL_PLANE) as client:
            for gateway in gateways:
                await until_nodes(client, gateway, list(addresses))
            body = {"id": "vm-3", "source": SOURCE, "node": "gpu-host-3"}
            async with client.post(gateways[0].make_url("/api/v1/sessions"), json=body) as response:
                assert response.status == 201, await response.text()
            async with client.post(gateways[1].make_url("/api/v1/sessions/vm-3/tokens"), json={}) as response:
                issued = await response.json()
            assert issued["console_url"].startswith(f"{gateways[1].make_url('/')}?session=vm-3&node=gpu-host-3#")
            audience = hosts["gpu-host-3"].app[REGISTRY].get("vm-3").audience
            async with chromium() as browser:
                page = await browser.new_page()
                await page.goto(issued["console_url"])
                await decoded_more_than(page, 10)
                (seat,) = audience
                assert (seat.transport, seat.token_id) == ("webrtc", issued["id"])
                revoking = time.monotonic()
                path = f"/api/v1/sessions/vm-3/tokens/{issued['id']}"
                async with client.delete(gateways[0].make_url(path)) as response:
                    assert response.status == 204
                await page.wait_for_function(
                    "() => window.vgpustream.state !== 'playing'", timeout=REVOKED_WITHIN * 1000
                )
                cut = time.monotonic() - revoking
                print(f"a console cut {cut:.2f} s after its link was revoked at a gateway")
                assert cut < REVOKED_WITHIN and len(audience) == 0
                await page.wait_for_function("() => window.vgpustream.state === 'failed'", timeout=10_000)
                shown = await page.locator("#status").text_content()
    assert shown == "the link was revoked", "the host's word, through the gateway"
