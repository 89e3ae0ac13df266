"""`vgpustream bench abuse`: hostile input on every route of a real `vgpustream serve`; no 5xx, nothing kept.

The corpus (vgpustream/testing/hostile.py) is the hand-made cases plus generated ones: API requests on every
route, WHEP SDP offers, trickle fragments, source URLs, and data-channel messages sent on a viewer that
watches all along; then the attacks of issue 24 (vgpustream/bench/attacks.py: seats, parser errors, a header
trickle, a crowd of connections, a data-channel flood). The server's fds, threads and RSS are read from /proc
after a warm-up pass and again after it all; the figures must come back, the stream must go on, and the server
must log no traceback and no token.
"""

from __future__ import annotations

import asyncio
import collections
import json
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp

from vgpustream.bench import attacks
from vgpustream.compat import advertise_host_addresses
from vgpustream.testing import hostile
from vgpustream.testing.receiver import WhepReceiver, local_peer
from vgpustream.testing.server import resources, serve, settle

OPERATOR_TOKEN = "abuse-bench-operator"
WARM_UP_PASSES = 6  # at most; fewer once two passes in a row add no thread


async def a_viewer_offer() -> str:
    """An offer as the console makes it: recvonly video and the input data channel."""
    pc = local_peer()
    pc.addTransceiver("video", direction="recvonly")
    pc.createDataChannel("input")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return sdp


TRANSIENT = ("source_unavailable", "full", "unavailable")
"""The error codes of a documented 503 (vgpustream/api/errors.py): try again later (a VM's device not there yet)."""


def error_code(body: bytes) -> str | None:
    try:
        return str(json.loads(body)["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return None


class Prober:
    """Sends probes, counts statuses, and undoes what an accepted probe made (viewers, sessions)."""

    def __init__(self, url: str, http: aiohttp.ClientSession, viewer_location: str) -> None:
        self.url = url
        self.http = http
        self.viewer_location = viewer_location
        self.statuses: collections.Counter[int] = collections.Counter()
        self.by_kind: dict[str, collections.Counter[int]] = collections.defaultdict(collections.Counter)
        self.server_errors: list[dict[str, Any]] = []
        self.transient: collections.Counter[str] = collections.Counter()

    async def send(self, probe: hostile.Probe) -> None:
        path = probe.path.replace("{viewer}", self.viewer_location)
        headers = {"Content-Type": probe.content_type} if probe.content_type else {}
        async with self.http.request(probe.method, self.url + path, data=probe.body, headers=headers) as response:
            body = await response.read()
            status, location = response.status, response.headers.get("Location")
        self.statuses[status] += 1
        self.by_kind[probe.kind][status] += 1
        if status == 503 and error_code(body) in TRANSIENT:
            self.transient[error_code(body)] += 1
        elif status >= 500:
            sent = probe.body[:200].decode("utf-8", "replace")
            self.server_errors.append({"kind": probe.kind, "method": probe.method, "path": path[:120], "body": sent})
        await self._undo(probe, status, location)

    async def _undo(self, probe: hostile.Probe, status: int, location: str | None) -> None:
        """Leave the server as it was: no extra viewers or sessions, the target session there."""
        if probe.method == "POST" and status == 201 and location:
            async with self.http.delete(urljoin(self.url, location)) as response:
                await response.read()
        if probe.method == "DELETE" and status == 204 and hostile.TARGET in probe.path:
            await create_target(self.url, self.http)


async def create_target(url: str, http: aiohttp.ClientSession) -> None:
    body = {"id": hostile.TARGET, "source": "synthetic:320x240@5"}
    async with http.post(f"{url}/api/v1/sessions", json=body) as response:
        await response.read()


async def fresh_target(url: str, http: aiohttp.ClientSession) -> None:
    """The probes' target session made anew, its encoder thread started (each session's starts with its first
    encode): the probes delete it, make it again and offer it viewers, so the threads it has after a pass depend
    on their order. Made fresh before each count of the server's resources, the count does not."""
    async with http.delete(f"{url}/api/v1/sessions/{hostile.TARGET}") as response:
        await response.read()
    await create_target(url, http)
    viewer = WhepReceiver(f"{url}/whep/{hostile.TARGET}", http)
    await viewer.connect()
    await viewer.next_frame()
    await viewer.close()


async def _run(url: str, pid: int, examples: int, seed: int) -> dict[str, Any]:
    advertise_host_addresses(["127.0.0.1"])  # the watching viewer and the server meet on loopback
    auth = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
    async with aiohttp.ClientSession(headers=auth) as http:
        await fresh_target(url, http)
        watcher = WhepReceiver(f"{url}/whep/default", http)
        await watcher.connect()
        await watcher.next_frame()
        await watcher.wait_channel_open()
        assert watcher.location is not None
        offer = await a_viewer_offer()
        made = hostile.hand_made(offer)
        probes, messages = hostile.generated(offer, examples, seed)
        prober = Prober(url, http, watcher.location.removeprefix(url))
        # warm-up: whatever the server makes lazily (caches; thread pools other than its background
        # threads, which all start with it), until two passes in a row leave the thread count as they
        # found it
        stable = 0
        for _ in range(WARM_UP_PASSES):
            threads = resources(pid)["threads"]
            for probe in made + probes:
                await prober.send(probe)
            await asyncio.sleep(1.0)
            await fresh_target(url, http)
            stable = stable + 1 if resources(pid)["threads"] <= threads else 0
            if stable == 2:
                break
        prober = Prober(url, http, watcher.location.removeprefix(url))
        before = resources(pid)
        started = time.monotonic()
        for probe in made + probes:
            await prober.send(probe)
        for message in messages:
            watcher.send_message(message)
        await asyncio.sleep(1.0)  # the messages reach the server before it is measured
        seconds = time.monotonic() - started
        stream_goes_on = await watcher.fresh_frames(1.0) > 0
        async with http.get(f"{url}/api/v1/sessions/default") as response:
            stats = (await response.json())["stats"]
        address = urlsplit(url)
        host, port = str(address.hostname), int(address.port or 80)
        attacked = {
            "seats": await attacks.seats(url, http, offer),
            "parser_errors": await attacks.parser_errors(host, port),
            "header_trickle": await attacks.header_trickle(host, port),
            "crowd": await attacks.crowd(host, port),
            "channel_flood": await attacks.channel_flood(url, http),
        }
        attacked["stream_goes_on"] = await watcher.fresh_frames(1.0) > 0
        await fresh_target(url, http)
        after = await settle(pid, before)
        await watcher.close()
    return {
        "requests": sum(prober.statuses.values()),
        "data_channel_messages": len(messages),
        "seconds": round(seconds, 1),
        "warm_up_requests": len(made) + len(probes),
        "statuses": {str(k): v for k, v in sorted(prober.statuses.items())},
        "statuses_by_kind": {kind: {str(k): v for k, v in sorted(c.items())} for kind, c in prober.by_kind.items()},
        "server_errors_5xx": len(prober.server_errors),
        "transient_503_by_code": dict(prober.transient),
        "server_error_examples": prober.server_errors[:10],
        "input_messages_invalid": stats.get("input_invalid"),
        "stream_goes_on": stream_goes_on,
        "resources_before": before,
        "resources_after": after,
        "back_to_baseline": after["fds"] <= before["fds"] and after["threads"] <= before["threads"],
        "rss_growth_kb": after["rss_kb"] - before["rss_kb"],
        "attacks": attacked,
    }


def run(examples: int, seed: int) -> dict[str, Any]:
    """Serve, probe with the hand-made corpus and `examples` generated cases of each kind, and report."""
    with tempfile.TemporaryDirectory(prefix="vgpustream-abuse-") as folder:
        env = {"VGPUSTREAM_OPERATOR_TOKEN": OPERATOR_TOKEN}
        # a high request budget: probes that hit the rate limit would test only the rate limit
        args = ("--source", "synthetic:320x240@15", "--max-sessions", "4", "--max-viewers", "4",
                "--rate-limit", "100000", "--rate-burst", "100000")  # fmt: skip
        with serve(Path(folder) / "state", *args, env=env) as served:
            result = asyncio.run(_run(served.url, served.process.pid, examples, seed))
            log = served.output()
        result["server_tracebacks"] = log.count("Traceback (most recent call last)")
        result["token_in_log"] = attacks.SECRET in log
        result["examples_per_kind"] = examples
        result["seed"] = seed
    return result


def table(result: dict[str, Any]) -> str:
    before, after = result["resources_before"], result["resources_after"]
    return "\n".join(
        [
            f"{result['requests']} hostile requests and {result['data_channel_messages']} data-channel messages "
            f"in {result['seconds']} s (seed {result['seed']})",
            "statuses: " + ", ".join(f"{k}: {v}" for k, v in result["statuses"].items()),
            f"5xx: {result['server_errors_5xx']} (besides 503 try-later: {result['transient_503_by_code']})   "
            f"tracebacks: {result['server_tracebacks']}   "
            f"stream goes on: {result['stream_goes_on']}",
            f"fds {before['fds']} -> {after['fds']}, threads {before['threads']} -> {after['threads']}, "
            f"RSS {before['rss_kb']} -> {after['rss_kb']} kB (back to baseline: {result['back_to_baseline']})",
            json.dumps(result["statuses_by_kind"]),
            f"token in the log: {result['token_in_log']}   attacks (issue 24): {json.dumps(result['attacks'])}",
        ]
    )
