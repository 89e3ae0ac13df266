"""The attacks of issue 24 that `bench abuse` runs after its corpus: each one's figures, for its report.

- seats: one view token's offers that never connect take no more than the token's seats, the operator still
  gets one, and the seats come back once the offers' connect timeout has passed;
- parser errors: requests whose Authorization header the HTTP parser refuses are answered 400 by us (the log
  is searched for their token afterwards, by the bench);
- header trickle: hundreds of connections that send their headers a byte at a time, from several loopback
  addresses, are closed by the server, while /healthz, asked from another address, answers at once;
- a client address that opens more connections than it may is refused the extra ones;
- a viewer that floods its data channel is told why and disconnected.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import statistics
import threading
import time
from http.client import HTTPConnection
from typing import Any
from urllib.parse import urljoin

import aiohttp

from vgpustream.testing.hostile import malformed_headers
from vgpustream.testing.receiver import WhepReceiver

SECRET = "vgs_abuse-bench-secret-never-logged"
"""The token the malformed requests carry: the bench looks for it in the server's output."""
SEAT_SESSION = "abuse-seats"
SEAT_OFFERS = 17
TRICKLE_CONNECTIONS = 500
TRICKLE_ADDRESSES = 5
"""The trickling connections come from this many loopback addresses (127.0.0.2, ...), each within the
server's per-address bound; /healthz is asked from 127.0.0.1."""
CROWD_ADDRESS = "127.0.0.200"
CROWD_CONNECTIONS = 200
"""Connections opened from one address at once, more than --max-client-connections (128) allows."""
FLOOD_MESSAGES = 20_000
HEALTHZ_INTERVAL = 0.05
DEADLINE = 40.0
"""Seconds any attack may take to be over (the server's timeouts are 10 s)."""


async def _poll(condition: Any, timeout: float = DEADLINE) -> float | None:
    """Seconds until the awaitable `condition()` holds (polled every 0.1 s); None if it did not in `timeout`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if await condition():
            return round(time.monotonic() - started, 1)
        await asyncio.sleep(0.1)
    return None


async def _viewers(url: str, http: aiohttp.ClientSession, session: str) -> int:
    async with http.get(f"{url}/api/v1/sessions/{session}") as response:
        return int((await response.json())["stats"]["viewers"])


async def _token(url: str, http: aiohttp.ClientSession, session: str) -> str:
    async with http.post(f"{url}/api/v1/sessions/{session}/tokens", json={"role": "view"}) as response:
        if response.status != 201:
            raise RuntimeError(f"cannot issue a token for {session}: {response.status} {await response.text()}")
        return str((await response.json())["token"])


async def seats(url: str, http: aiohttp.ClientSession, offer: str) -> dict[str, Any]:
    """SEAT_OFFERS offers of one view token that never connect, then the operator's, on a session of 4 seats."""
    body = {"id": SEAT_SESSION, "source": "synthetic:320x240@5", "max_viewers": 4}
    async with http.post(f"{url}/api/v1/sessions", json=body) as response:
        if response.status != 201:
            raise RuntimeError(f"cannot create session {SEAT_SESSION}: {response.status} {await response.text()}")
    token = await _token(url, http, SEAT_SESSION)
    whep = f"{url}/whep/{SEAT_SESSION}"
    statuses: collections.Counter[int] = collections.Counter()
    for _ in range(SEAT_OFFERS):
        headers = {"Content-Type": "application/sdp", "Authorization": f"Bearer {token}"}
        async with aiohttp.ClientSession() as person, person.post(whep, data=offer, headers=headers) as response:
            statuses[response.status] += 1
    async with http.post(whep, data=offer, headers={"Content-Type": "application/sdp"}) as response:
        operator, location = response.status, response.headers.get("Location")
    if location is not None:
        async with http.delete(urljoin(url, location)) as response:
            await response.read()

    async def freed() -> bool:
        return await _viewers(url, http, SEAT_SESSION) == 0

    freed_after = await _poll(freed)
    async with http.delete(f"{url}/api/v1/sessions/{SEAT_SESSION}") as response:
        await response.read()
    return {
        "offers": {str(k): v for k, v in sorted(statuses.items())},
        "operator_status": operator,
        "seats_freed_s": freed_after,
    }


async def _exchange(host: str, port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(request)
    try:
        return await asyncio.wait_for(reader.read(), DEADLINE)
    finally:
        writer.close()


def _status_line(answer: bytes) -> str:
    return answer.split(b"\r\n", 1)[0].decode("latin-1")


async def parser_errors(host: str, port: int) -> dict[str, Any]:
    """Requests whose Authorization header (carrying SECRET) the parser refuses: what each is answered."""
    answers = {}
    for name, header in malformed_headers(SECRET).items():
        request = f"GET /api/v1/sessions HTTP/1.1\r\nHost: {host}\r\n{header}\r\n".encode("latin-1")
        answer = await _exchange(host, port, request)
        answers[name] = {"status": _status_line(answer), "ours": b"\r\nServer: vgpustream\r\n" in answer}
    return answers


def _time_healthz(host: str, port: int, stop: threading.Event) -> list[float]:
    """Milliseconds each /healthz took, asked every HEALTHZ_INTERVAL on one kept-alive connection until `stop`
    (in a thread of its own: the bench's event loop, busy with the trickle, does not delay the timing)."""
    connection = HTTPConnection(host, port, timeout=DEADLINE)
    took = []
    try:
        while not stop.is_set():
            asked = time.monotonic()
            connection.request("GET", "/healthz")
            connection.getresponse().read()
            took.append((time.monotonic() - asked) * 1000)
            stop.wait(HEALTHZ_INTERVAL)
    finally:
        connection.close()
    return took


async def header_trickle(host: str, port: int) -> dict[str, Any]:
    """TRICKLE_CONNECTIONS connections that send their headers a byte every half second; /healthz meanwhile."""
    opened = await asyncio.gather(
        *(
            asyncio.open_connection(host, port, local_addr=(f"127.0.0.{2 + n % TRICKLE_ADDRESSES}", 0))
            for n in range(TRICKLE_CONNECTIONS)
        )
    )
    started = time.monotonic()
    closed_at: list[float] = []

    async def until_closed(reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(ConnectionError):
            await reader.read()
        closed_at.append(time.monotonic() - started)

    readers = [asyncio.create_task(until_closed(reader)) for reader, _ in opened]
    for _, writer in opened:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Trickle: ")
    stop = threading.Event()
    timing = asyncio.create_task(asyncio.to_thread(_time_healthz, host, port, stop))
    while len(closed_at) < len(opened) and time.monotonic() - started < DEADLINE:
        for _, writer in opened:
            if not writer.is_closing():
                writer.write(b"x")
        await asyncio.sleep(0.5)
    stop.set()
    healthz_ms = await timing
    for reader_task in readers:
        reader_task.cancel()
    for _, writer in opened:
        writer.close()
    await asyncio.gather(*readers, return_exceptions=True)
    return {
        "connections": len(opened),
        "closed_by_server": len(closed_at),
        "all_closed_after_s": round(max(closed_at), 1) if len(closed_at) == len(opened) else None,
        "healthz_requests": len(healthz_ms),
        "healthz_ms_median": round(statistics.median(healthz_ms), 1),
        "healthz_ms_p95": round(statistics.quantiles(healthz_ms, n=20)[-1], 1),
        "healthz_ms_max": round(max(healthz_ms), 1),
    }


async def crowd(host: str, port: int) -> dict[str, Any]:
    """CROWD_CONNECTIONS connections from one address at once: how many the server refuses (429)."""
    opened = await asyncio.gather(
        *(asyncio.open_connection(host, port, local_addr=(CROWD_ADDRESS, 0)) for _ in range(CROWD_CONNECTIONS))
    )

    async def answer(reader: asyncio.StreamReader) -> bytes:
        try:
            return await asyncio.wait_for(reader.read(64), 2.0)
        except (TimeoutError, ConnectionError):
            return b""  # held open, as the server keeps a connection that has not sent a request yet

    answers = await asyncio.gather(*(answer(reader) for reader, _ in opened))
    for _, writer in opened:
        writer.close()
    return {
        "connections": CROWD_CONNECTIONS,
        "refused_429": sum(a.startswith(b"HTTP/1.1 429 ") for a in answers),
    }


async def channel_flood(url: str, http: aiohttp.ClientSession) -> dict[str, Any]:
    """A view viewer of session 'default' that sends FLOOD_MESSAGES messages as fast as it can."""
    before = await _viewers(url, http, "default")
    async with aiohttp.ClientSession() as person:
        flooder = WhepReceiver(f"{url}/whep/default", person, token=await _token(url, http, "default"))
        await flooder.connect()
        await flooder.wait_channel_open()
        for n in range(FLOOD_MESSAGES):
            flooder.send_message(f'{{"type":"pointer","x":0.5,"y":0.5,"buttons":{n % 2}}}')

        async def gone() -> bool:
            return await _viewers(url, http, "default") == before

        disconnected_after = await _poll(gone)
        reasons = [m.get("reason") for m in flooder.messages if m.get("type") == "disconnect"]
        await flooder.close()
    async with http.get(f"{url}/api/v1/sessions/default") as response:
        flooding = (await response.json())["stats"]["viewers_flooding"]
    return {
        "messages": FLOOD_MESSAGES,
        "disconnected_after_s": disconnected_after,
        "told": reasons,
        "viewers_flooding": flooding,
    }
