"""`vgpustream bench cluster`: what the gateway adds, in front of real hosts.

N `vgpustream serve` processes on loopback, each with S sessions of a small synthetic source made through the
gateway (a `vgpustream gateway` process that knows them by --node), then: the latency of the cluster's list
through the gateway (every host asked at once), beside one host's own list; and the gateway's CPU time per
relayed WHEP offer (POST, its answer, the viewer's DELETE), from its /proc counters over a run of offers.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import aiohttp

from vgpustream.bench.fanout import cpu_seconds
from vgpustream.testing.receiver import an_offer
from vgpustream.testing.server import Served, gateway, serve

HOST_TOKEN = "bench-cluster-host-token"
GATEWAY_TOKEN = "bench-cluster-gateway-token"
SOURCE = "synthetic:320x240@5"
"""A picture as cheap as a session has, so that the hosts' capture work does not crowd the measurement."""


def percentiles(samples: list[float]) -> dict[str, float]:
    """p50 and p99 of `samples`, in milliseconds."""
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return {"p50": round(statistics.median(samples) * 1000, 2), "p99": round(cuts[98] * 1000, 2)}


async def timed_lists(http: aiohttp.ClientSession, url: str, token: str, count: int) -> list[float]:
    """Seconds each of `count` lists of sessions took, one after another."""
    times = []
    for _ in range(count):
        start = time.perf_counter()
        async with http.get(f"{url}/api/v1/sessions", headers={"Authorization": f"Bearer {token}"}) as response:
            await response.read()
            if response.status != 200:
                raise RuntimeError(f"the list answered {response.status}")
        times.append(time.perf_counter() - start)
    return times


async def relayed_offers(http: aiohttp.ClientSession, url: str, sessions: list[tuple[str, str]], count: int) -> None:
    """`count` WHEP offers through the gateway, spread over `sessions` (node, id), each viewer left at once."""
    offer = await an_offer()
    operator = {"Authorization": f"Bearer {GATEWAY_TOKEN}"}
    for number in range(count):
        node, session = sessions[number % len(sessions)]
        async with http.post(
            f"{url}/whep/{session}?node={node}", data=offer, headers={"Content-Type": "application/sdp", **operator}
        ) as response:
            await response.read()
            if response.status != 201:
                raise RuntimeError(f"a WHEP offer through the gateway answered {response.status}")
            location = response.headers["Location"]
        async with http.delete(f"{url}{location}", headers=operator) as response:
            await response.read()


async def measure(
    hosts: list[Served], front: Served, sessions_per_host: int, lists: int, offers: int
) -> dict[str, Any]:
    made: list[tuple[str, str]] = []
    async with aiohttp.ClientSession() as http:
        operator = {"Authorization": f"Bearer {GATEWAY_TOKEN}"}
        for index in range(len(hosts)):
            node = f"host-{index + 1}"
            for number in range(sessions_per_host):
                body = {"id": f"vm-{number}", "source": SOURCE, "node": node}
                async with http.post(f"{front.url}/api/v1/sessions", json=body, headers=operator) as response:
                    if response.status != 201:
                        raise RuntimeError(f"making a session through the gateway answered {response.status}")
                made.append((node, f"vm-{number}"))
        through = await timed_lists(http, front.url, GATEWAY_TOKEN, lists)
        direct = await timed_lists(http, hosts[0].url, HOST_TOKEN, lists)
        cpu_before, wall_before = cpu_seconds(front.process.pid), time.monotonic()
        await relayed_offers(http, front.url, made, offers)
        cpu_after, wall_after = cpu_seconds(front.process.pid), time.monotonic()
    return {
        "hosts": len(hosts),
        "sessions_per_host": sessions_per_host,
        "list_through_gateway_ms": percentiles(through),
        "list_of_one_host_ms": percentiles(direct),
        "whep_offers": offers,
        "gateway_cpu_ms_per_whep": round((cpu_after - cpu_before) / offers * 1000, 2),
        "whep_offers_per_second": round(offers / (wall_after - wall_before), 1),
    }


def run(*, hosts: int, sessions_per_host: int, lists: int, offers: int) -> dict[str, Any]:
    host_env = {"VGPUSTREAM_OPERATOR_TOKEN": HOST_TOKEN}
    gateway_env = {"VGPUSTREAM_OPERATOR_TOKEN": GATEWAY_TOKEN, "VGPUSTREAM_HOST_TOKEN": HOST_TOKEN}
    with tempfile.TemporaryDirectory(prefix="vgpustream-bench-") as folder, ExitStack() as running:
        served = [
            running.enter_context(
                serve(
                    Path(folder) / f"host-{index}",
                    *("--source", SOURCE, "--max-sessions", str(sessions_per_host + 1), "--no-console-link"),
                    *("--node-name", f"host-{index}", "--max-viewers", "64"),
                    env=host_env,
                )
            )
            for index in range(1, hosts + 1)
        ]
        nodes = [argument for index, s in enumerate(served, 1) for argument in ("--node", f"host-{index}={s.url}")]
        front = running.enter_context(gateway(Path(folder), *nodes, env=gateway_env))
        return asyncio.run(measure(served, front, sessions_per_host, lists, offers))


def table(result: dict[str, Any]) -> str:
    through, one = result["list_through_gateway_ms"], result["list_of_one_host_ms"]
    return (
        f"{result['hosts']} hosts x {result['sessions_per_host']} sessions: the cluster's list through the gateway "
        f"p50 {through['p50']} ms, p99 {through['p99']} ms (one host's own: p50 {one['p50']} ms, p99 {one['p99']} ms); "
        f"{result['gateway_cpu_ms_per_whep']} ms of the gateway's CPU per relayed WHEP offer "
        f"({result['whep_offers']} offers, {result['whep_offers_per_second']}/s)"
    )
