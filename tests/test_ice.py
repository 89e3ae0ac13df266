"""ICE as browsers do it: host addresses hidden behind mDNS names, end-of-candidates, peer-reflexive pairs.

Every browser with its default settings offers `<uuid>.local` host candidates that nobody here can
resolve; it connects through its own connectivity checks, which make the server learn its address as a
peer-reflexive candidate. These tests offer what such a browser offers, from a real aiortc peer.
"""

from __future__ import annotations

import asyncio
import re
import uuid

import aiohttp
import aioice.ice
import pytest
from aioice.mdns import MDnsProtocol
from aiortc import RTCSessionDescription

from tests.conftest import wait_for
from vgpustream import compat
from vgpustream.api.state import REGISTRY
from vgpustream.testing.receiver import offering_peer

SDP = {"Content-Type": "application/sdp"}
TRICKLE = {"Content-Type": "application/trickle-ice-sdpfrag"}
CANDIDATE = re.compile(r"^(a=candidate:\S+ \d+ \S+ \d+) (\S+) (\d+) (typ .*)$", re.MULTILINE)


def hidden(offer: str, end_of_candidates: bool = True) -> str:
    """`offer` as a browser with default settings makes it: each host address replaced by an mDNS name."""
    offer = CANDIDATE.sub(lambda m: f"{m[1]} {uuid.uuid4()}.local {m[3]} {m[4]}", offer)
    return offer if end_of_candidates else offer.replace("a=end-of-candidates\r\n", "")


@pytest.fixture
def unanswered_mdns(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """mDNS names nobody answers, as on a real network where nobody answers for a browser's names: the
    names asked for, in order; each query waits until it is cancelled."""
    asked: list[str] = []

    async def unanswered(protocol: MDnsProtocol, hostname: str, timeout: float | None = 1.0) -> str | None:
        asked.append(hostname)
        await asyncio.Event().wait()
        return None

    async def no_socket(subscriber: object) -> MDnsProtocol:
        return MDnsProtocol()  # sends nothing: its `resolve` is the one above

    monkeypatch.setattr(MDnsProtocol, "resolve", unanswered)
    monkeypatch.setattr("aioice.ice.get_or_create_mdns_protocol", no_socket)
    return asked


async def post(http: aiohttp.ClientSession, url: str, offer: str) -> tuple[int, str, str]:
    async with http.post(url, data=offer, headers=SDP) as response:
        return response.status, await response.text(), response.headers.get("Location", "")


async def test_an_offer_of_mdns_names_only_is_answered_without_resolving_them(make_server, http, unanswered_mdns):
    """A name nobody answers never holds up the answer: before the patch, aiortc awaited each resolution
    (1 s each on a network, for ever here) inside the POST."""
    server = await make_server(source="synthetic:320x240@30")
    pc = await offering_peer(data_channel=True)
    status, answer, location = await asyncio.wait_for(
        post(http, str(server.make_url("/whep/default")), hidden(pc.localDescription.sdp)), timeout=10
    )
    assert status == 201, answer
    assert unanswered_mdns, "the names are being resolved, in the background"
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    await wait_for(lambda: pc.connectionState == "connected", what="ICE through the viewer's own checks")
    async with http.delete(server.make_url(location)) as response:
        assert response.status == 200
    await pc.close()


async def test_end_of_candidates_without_a_usable_candidate_still_connects(make_server, http, viewers):
    """Firefox's offer: mDNS names only, and end-of-candidates. aioice gave up at once ("Components {1} have
    no candidate pairs"); it now waits for the browser's checks, which make a peer-reflexive pair."""
    server = await make_server(source="synthetic:320x240@30")
    pc = await offering_peer()
    frames: asyncio.Queue[object] = asyncio.Queue()
    pc.on("track", lambda track: asyncio.ensure_future(_receive(track, frames)))
    offer = hidden(pc.localDescription.sdp)
    assert "a=end-of-candidates" in offer and ".local " in offer
    status, answer, _ = await post(http, str(server.make_url("/whep/default")), offer)
    assert status == 201, answer
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    await wait_for(lambda: pc.connectionState == "connected", what="a connection through peer-reflexive pairs")
    frame = await asyncio.wait_for(frames.get(), timeout=10)
    assert frame.width == 320
    await pc.close()


async def _receive(track: object, frames: asyncio.Queue[object]) -> None:
    frames.put_nowait(await track.recv())  # type: ignore[attr-defined]


async def test_candidates_no_peer_can_have_are_dropped_and_the_rest_bounded(make_server, http, viewers):
    """Multicast, broadcast and unspecified addresses, port 0, and a storm of trickled candidates: no check
    is sent to them, at most MAX_REMOTE_CANDIDATES are kept, and the session streams on."""
    server = await make_server(source="synthetic:320x240@30")
    pc = await offering_peer()
    offer = pc.localDescription.sdp.replace("a=end-of-candidates\r\n", "")
    unusable = ["224.0.0.1 5000", "255.255.255.255 5000", "0.0.0.0 5000", "127.0.0.1 0", "ff02::1 5000"]
    offer = offer.replace(
        "a=ice-ufrag",
        "".join(f"a=candidate:x{n} 1 udp 1 {a} typ host\r\n" for n, a in enumerate(unusable)) + "a=ice-ufrag",
    )
    status, answer, location = await post(http, str(server.make_url("/whep/default")), offer)
    assert status == 201, answer
    viewer = server.app[REGISTRY].get("default").audience.viewer(location.rsplit("/", 1)[1])
    transport = viewer._pc.getTransceivers()[0].receiver.transport.transport
    kept = {c.ip for c in transport.getRemoteCandidates()}
    assert not kept & {"224.0.0.1", "255.255.255.255", "0.0.0.0", "ff02::1"}
    for n in range(40):  # a PATCH storm: 40 x 64 candidates, each a different address
        fragment = "a=mid:0\r\n" + "".join(
            f"a=candidate:s{n}x{k} 1 udp 1 127.0.{n}.{k + 1} 9 typ host\r\n" for k in range(63)
        )
        async with http.patch(server.make_url(location), data=fragment, headers=TRICKLE) as response:
            assert response.status == 204
    assert len(transport.getRemoteCandidates()) <= compat.MAX_REMOTE_CANDIDATES
    watcher = await viewers(server)
    assert (await watcher.next_frame()).picture.width == 320, "the session is unaffected"
    await pc.close()


async def test_an_offer_of_ten_thousand_mdns_candidates_is_refused_whole(make_server, http, viewers):
    server = await make_server(source="synthetic:320x240@30")
    pc = await offering_peer()
    many = "".join(f"a=candidate:{n} 1 udp 1 {uuid.uuid4()}.local 9 typ host\r\n" for n in range(10_000))
    status, body, _ = await post(http, str(server.make_url("/whep/default")), pc.localDescription.sdp + many)
    assert status == 413, body
    await pc.close()
    watcher = await viewers(server)
    assert (await watcher.next_frame()).picture.width == 320


async def test_as_many_mdns_candidates_as_fit_resolve_at_most_a_few_at_a_time(make_server, http, unanswered_mdns):
    server = await make_server(source="synthetic:320x240@30")
    pc = await offering_peer()
    offer = pc.localDescription.sdp
    # 300 names (about 21 KB) fit in an offer of the largest size accepted (max_sdp_bytes, 32 KB)
    many = "".join(f"a=candidate:{n} 1 udp 1 {uuid.uuid4()}.local {n + 1} typ host\r\n" for n in range(300))
    offer = offer.replace("a=ice-ufrag", many + "a=ice-ufrag", 1)
    status, answer, location = await post(http, str(server.make_url("/whep/default")), offer)
    assert status == 201, answer
    await asyncio.sleep(0)
    assert 0 < len(unanswered_mdns) <= compat.MAX_RESOLVING
    async with http.delete(server.make_url(location)) as response:
        assert response.status == 200
    await pc.close()


def test_aioices_mdns_state_belongs_to_the_event_loop_that_asks_for_it():
    """A loop that closed while one of its tasks held aioice's mDNS lock (a test that ended mid-resolution)
    leaves nothing that the next loop waits on: in CI a console test waited 20 s on such a lock."""
    compat.install()

    async def leave_the_lock_held() -> None:
        await aioice.ice.unref_mdns_protocol(object())  # this loop's state, now
        state = aioice.ice._mdns
        state.lock, state.protocol, state.subscribers = asyncio.Lock(), None, set()
        await state.lock.acquire()  # and the loop ends with it held

    async def let_go() -> None:
        await asyncio.wait_for(aioice.ice.unref_mdns_protocol(object()), 2.0)

    asyncio.run(leave_the_lock_held())
    asyncio.run(let_go())
