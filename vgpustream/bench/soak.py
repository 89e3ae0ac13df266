"""`vgpustream bench soak`: a server under steady churn for N minutes; it must hold flat and keep its viewers.

A real `vgpustream serve` whose session `default` changes mode every few seconds (synthetic `?cycle=`),
watched throughout by two steady viewers, while four kinds of churn run at random (seeded):
viewers that join and leave (half of them closing without a DELETE, as a closed browser tab does),
offers whose peer never finishes ICE, sessions created (with a viewer) and deleted, and view tokens
revoked while their viewer watches. The server's fds, threads and RSS are sampled over time; after
the churn stops they must come back to the figures taken after a warm-up round.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import random
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from vgpustream.compat import advertise_host_addresses
from vgpustream.testing.receiver import WhepError, WhepReceiver, local_peer
from vgpustream.testing.server import SETTLE_SECONDS, resources, serve, settle

OPERATOR_TOKEN = "soak-bench-operator"
SOURCE = "synthetic:320x240@15?cycle=4"
STEADY_VIEWERS = 2
WINDOW_SECONDS = 10.0
"""Steady viewers' frames are counted in windows of this length: the worst window is reported."""
WARM_UP_SECONDS = 20.0
TRANSIENT = {"full", "source_unavailable", "unavailable"}


class Soak:
    """The churn, its counters, and every HTTP status it saw."""

    def __init__(self, url: str, http: aiohttp.ClientSession, seed: int) -> None:
        self.url = url
        self.http = http
        self.rng = random.Random(seed)
        self.done: collections.Counter[str] = collections.Counter()
        self.statuses: collections.Counter[int] = collections.Counter()
        self.server_errors: list[str] = []
        self._sessions = 0

    async def request(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        async with self.http.request(method, f"{self.url}{path}", **kwargs) as response:
            body = await response.json() if response.content_type == "application/json" else None
            self.count(response.status, body)
            return response.status, body

    def count(self, status: int, body: Any) -> None:
        self.statuses[status] += 1
        code = body.get("error", {}).get("code") if isinstance(body, dict) else None
        if status >= 500 and code not in TRANSIENT:
            self.server_errors.append(f"{status} {code}")

    async def watch(self, session: str, seconds: float, token: str | None = None) -> WhepReceiver | None:
        """A viewer that joins `session` and receives for `seconds`; None when the server said no (counted)."""
        receiver = WhepReceiver(f"{self.url}/whep/{session}", self.http, token=token)
        try:
            await receiver.connect()
        except WhepError as exc:
            self.count(exc.status, None)
            await receiver.pc.close()
            return None
        self.statuses[201] += 1
        await receiver.receive_for(seconds)
        return receiver

    async def viewer(self) -> None:
        receiver = await self.watch("default", self.rng.uniform(0.5, 3.0))
        if receiver is None:
            return
        if self.rng.random() < 0.5:
            await receiver.close()
            self.done["viewers_deleted"] += 1
        else:
            await receiver.pc.close()  # the tab is gone: no DELETE, the server notices the peer closing
            self.done["viewers_vanished"] += 1

    async def half_open(self) -> None:
        """An offer whose peer never takes the answer: the server must drop the viewer on its own."""
        pc = local_peer()
        pc.addTransceiver("video", direction="recvonly")
        pc.createDataChannel("input")
        await pc.setLocalDescription(await pc.createOffer())
        headers = {"Content-Type": "application/sdp"}
        await self.request("POST", "/whep/default", data=pc.localDescription.sdp, headers=headers)
        await pc.close()
        self.done["offers_never_connected"] += 1

    async def session(self) -> None:
        self._sessions += 1
        name = f"soak-{self._sessions}"
        status, _ = await self.request("POST", "/api/v1/sessions", json={"id": name, "source": SOURCE})
        if status != 201:
            return
        receiver = await self.watch(name, self.rng.uniform(1.0, 4.0))
        await self.request("DELETE", f"/api/v1/sessions/{name}")
        if receiver is not None:
            await receiver.pc.close()
        self.done["sessions_created_and_deleted"] += 1

    async def revoked_token(self) -> None:
        status, token = await self.request("POST", "/api/v1/sessions/default/tokens", json={"role": "view"})
        if status != 201:
            return
        receiver = await self.watch("default", self.rng.uniform(0.5, 2.0), token=token["token"])
        await self.request("DELETE", f"/api/v1/sessions/default/tokens/{token['id']}")
        if receiver is not None:
            await receiver.pc.close()
            self.done["tokens_revoked_mid_stream"] += 1

    async def churn(self, until: float) -> None:
        """Run every kind of churn at random until the monotonic time `until`, a few at once."""
        kinds: list[Callable[[], Awaitable[None]]] = [self.viewer, self.half_open, self.session, self.revoked_token]

        async def worker() -> None:
            while time.monotonic() < until:
                await self.rng.choice(kinds)()
                await asyncio.sleep(self.rng.uniform(0.0, 0.5))

        await asyncio.gather(*(worker() for _ in range(3)))


async def steady(receiver: WhepReceiver, until: float, windows: list[int]) -> None:
    """Receive until `until`, appending the frames of each WINDOW_SECONDS window to `windows`."""
    while time.monotonic() < until:
        before = receiver.stats.frames
        await receiver.receive_for(min(WINDOW_SECONDS, until - time.monotonic()))
        windows.append(receiver.stats.frames - before)


async def sample(pid: int, started: float, until: float, every: float, samples: list[dict[str, Any]]) -> None:
    while time.monotonic() < until:
        samples.append({"t": round(time.monotonic() - started, 1), **resources(pid)})
        await asyncio.sleep(every)


async def left_behind(soak: Soak, until: float) -> int:
    """Viewers of `default` besides the steady ones, once offers never connected have timed out (or at `until`)."""
    while True:
        _, body = await soak.request("GET", "/api/v1/sessions/default/viewers")
        extra = len(body["viewers"]) - STEADY_VIEWERS
        if extra <= 0 or time.monotonic() > until:
            return extra
        await asyncio.sleep(0.5)


async def _run(url: str, pid: int, seconds: float, seed: int) -> dict[str, Any]:
    advertise_host_addresses(["127.0.0.1"])
    auth = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
    async with aiohttp.ClientSession(headers=auth) as http:
        soak = Soak(url, http, seed)
        watchers = [WhepReceiver(f"{url}/whep/default", http) for _ in range(STEADY_VIEWERS)]
        for watcher in watchers:
            await watcher.connect()
            await watcher.next_frame()
        # warm-up: lazily made pools and caches; the baseline is taken once it has settled
        warm = time.monotonic() + min(WARM_UP_SECONDS, seconds / 4)
        await asyncio.gather(soak.churn(warm), *(steady(w, warm, []) for w in watchers))
        baseline = await settle(pid, resources(pid))
        soak = Soak(url, http, seed + 1)
        started = time.monotonic()
        until = started + seconds
        windows: list[list[int]] = [[] for _ in watchers]
        samples: list[dict[str, Any]] = []
        await asyncio.gather(
            soak.churn(until),
            sample(pid, started, until, max(1.0, seconds / 60), samples),
            *(steady(w, until, counts) for w, counts in zip(watchers, windows, strict=True)),
        )
        after = await settle(pid, baseline)
        viewers_left = await left_behind(soak, time.monotonic() + SETTLE_SECONDS)
        for watcher in watchers:
            with contextlib.suppress(aiohttp.ClientError):
                await watcher.close()
    fps = [[round(count / WINDOW_SECONDS, 1) for count in counts[:-1] or counts] for counts in windows]
    return {
        "seconds": round(seconds),
        "seed": seed,
        "churn": dict(soak.done),
        "statuses": {str(k): v for k, v in sorted(soak.statuses.items())},
        "server_errors_5xx": len(soak.server_errors),
        "server_error_examples": soak.server_errors[:10],
        "steady_viewers": [
            {"frames": w.stats.frames, "fps_worst_window": min(f), "fps_best_window": max(f)}
            for w, f in zip(watchers, fps, strict=True)
        ],
        "viewers_left_besides_steady": viewers_left,
        "samples": samples,
        "resources_baseline": baseline,
        "resources_after": after,
        "back_to_baseline": after["fds"] <= baseline["fds"] and after["threads"] <= baseline["threads"],
        "rss_growth_kb": after["rss_kb"] - baseline["rss_kb"],
        "rss_growth_second_half_kb": samples[-1]["rss_kb"] - samples[len(samples) // 2]["rss_kb"],
    }


def run(minutes: float, seed: int) -> dict[str, Any]:
    """Serve, churn for `minutes`, and report."""
    with tempfile.TemporaryDirectory(prefix="vgpustream-soak-") as folder:
        env = {"VGPUSTREAM_OPERATOR_TOKEN": OPERATOR_TOKEN}
        args = ("--source", SOURCE, "--max-viewers", "64", "--viewer-idle-timeout", "5",
                "--rate-limit", "100000", "--rate-burst", "100000")  # fmt: skip
        with serve(Path(folder) / "state", *args, env=env) as served:
            result = asyncio.run(_run(served.url, served.process.pid, minutes * 60, seed))
            log = served.output()
        result["server_tracebacks"] = log.count("Traceback (most recent call last)")
    return result


def table(result: dict[str, Any]) -> str:
    base, after = result["resources_baseline"], result["resources_after"]
    samples = result["samples"]
    rss = [s["rss_kb"] for s in samples]
    return "\n".join(
        [
            f"{result['seconds']} s of churn (seed {result['seed']}): "
            + ", ".join(f"{k} {v}" for k, v in result["churn"].items()),
            "statuses: " + ", ".join(f"{k}: {v}" for k, v in result["statuses"].items()),
            f"5xx: {result['server_errors_5xx']}   tracebacks: {result['server_tracebacks']}   "
            f"viewers left behind: {result['viewers_left_besides_steady']}",
            "steady viewers, fps per 10 s window (worst/best): "
            + ", ".join(f"{v['fps_worst_window']}/{v['fps_best_window']}" for v in result["steady_viewers"]),
            f"fds {base['fds']} -> {after['fds']}, threads {base['threads']} -> {after['threads']}, "
            f"RSS {base['rss_kb']} -> {after['rss_kb']} kB (back to baseline: {result['back_to_baseline']})",
            f"RSS over the run: min {min(rss)} max {max(rss)} last {rss[-1]} kB, "
            f"{result['rss_growth_second_half_kb']:+} kB in its second half; "
            f"fds max {max(s['fds'] for s in samples)}, threads max {max(s['threads'] for s in samples)}",
        ]
    )
