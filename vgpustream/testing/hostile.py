"""Hostile inputs for every way into the server: hand-made cases (issue 12's findings) and generated ones.

The generated ones come from hypothesis strategies, drawn with a fixed seed so a run can be repeated.
Each HTTP probe may name `{viewer}` in its path: the WHEP resource of a viewer kept connected meanwhile.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from vgpustream.testing import INSTALL_TEST_EXTRAS

TARGET = "abuse-target"
"""The session that probes may change or delete (the bench recreates it); `default` keeps streaming."""
SDP = "application/sdp"
TRICKLE = "application/trickle-ice-sdpfrag"
JSON = "application/json"
DEEP = 5000


@dataclass(frozen=True)
class Probe:
    """One hostile HTTP request: which kind of input it tries, and the request itself."""

    kind: str
    method: str
    path: str
    body: bytes = b""
    content_type: str | None = None


def spoiled_offers(offer: str) -> dict[str, str]:
    """`offer` (video recvonly + data channel, mids 0 and 1) spoiled in each way a hostile client might."""
    lines = offer.splitlines()

    def without(*prefixes: str) -> str:
        return "".join(line + "\r\n" for line in lines if not line.startswith(prefixes))

    start = offer.index("m=video")
    end = offer.find("m=", start + 2)
    video = offer[start : end if end != -1 else len(offer)]
    minimal = "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:{}\r\na=rtpmap:96 H264/90000\r\n"
    return {
        "empty-mid": offer.replace("a=mid:0", "a=mid:"),
        "repeated-mid": offer.replace("a=mid:1", "a=mid:0"),
        "no-setup": without("a=setup"),
        "no-fingerprint": without("a=fingerprint"),
        "no-ice-credentials": without("a=ice-ufrag", "a=ice-pwd"),
        "300-video-m-lines": offer + "".join(minimal.format(f"v{n}") for n in range(300)),
        "two-video-sections": offer + video.replace("a=mid:0", "a=mid:9"),
        "sendonly-video": offer.replace("a=recvonly", "a=sendonly"),
        "unknown-kind": offer + "m=text 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:t\r\n",
        "application-not-sctp": offer.replace("UDP/DTLS/SCTP", "UDP/TLS/RTP/SAVPF"),
    }


HOSTILE_JSON = [
    "[" * DEEP + "]" * DEEP,
    '{"labels":' + "[" * DEEP + "]" * DEEP + "}",
    '{"labels":{"a":' + "{" * DEEP + "}" * DEEP + "}}",
    '{"encoder":{"keyframe_interval":' + "9" * 400 + "}}",
    '{"encoder":{"bitrate":' + "9" * 4000 + "}}",
    '{"encoder":{"fps":1e999}}',
    '{"encoder":{"keyframe_interval":NaN}}',
    '{"ttl_seconds":' + "9" * 400 + "}",
    '{"ttl_seconds":-Infinity}',
    '{"max_viewers":' + "9" * 400 + "}",
    '{"name":"\\ud800"}',
    '{"id":"x","id":"y"}',
    '{"labels":{"' + "k" * 10_000 + '":"v"}}',
    "\ufeff{}",
    "",
    "null",
]
HOSTILE_SOURCES = [
    "synthetic:99999x99999@30",
    "synthetic:0x0@0",
    "synthetic:1280x720@" + "9" * 400,
    "synthetic:-2x-2",
    "synthetic:1280x720@30?still=" + "1" * 1000,
    "vfio:../../etc/passwd",
    "vfio:00000000-0000-0000-0000-000000000000",
    "vfio-cdev:/dev/null",
    "vfio-cdev:/proc/self/mem",
    "vfio-fd:unix:/nonexistent.sock",
    "vfio-fd:unix:" + "a" * 200,
    "qemu-dbus:/nonexistent",
    "qemu-dbus+qmp:/dev/zero,/dev/zero",
    "qemu-dbus:unix:/proc/self/fd/0",
    "file:///etc/passwd",
    "synthetic:1280x720\x00",
    "synthetic:" + "9" * 1100,
    "",
]


def malformed_headers(secret: str) -> dict[str, str]:
    """Authorization headers carrying `secret` that aiohttp's parser refuses (issue 24): each a request's header
    line, with its CR LF."""
    return {
        "nul": f"Authorization: Bearer {secret}\x00\r\n",
        "control-character": f"Authorization: Bearer {secret}\x01\r\n",
        "bare-carriage-return": f"Authorization: Bearer {secret}\r\r\n",
        "header-over-8190-bytes": f"Authorization: Bearer {secret}{'x' * 9000}\r\n",
    }


def hand_made(offer: str, session: str = "default") -> list[Probe]:
    """The cases found by hand (issue 12) and their relatives, for every route they reach."""
    probes = [
        Probe("whep-offer", "POST", f"/whep/{session}", sdp.encode(), SDP) for sdp in spoiled_offers(offer).values()
    ]
    for text in HOSTILE_JSON:
        body = text.encode("utf-8", "surrogatepass")
        probes += [
            Probe("api", "POST", "/api/v1/sessions", body, JSON),
            Probe("api", "PATCH", f"/api/v1/sessions/{TARGET}", body, JSON),
            Probe("api", "POST", f"/api/v1/sessions/{TARGET}/tokens", body, JSON),
        ]
    for source in HOSTILE_SOURCES:
        body = json.dumps({"id": "abuse-source", "source": source}).encode()
        probes.append(Probe("source-url", "POST", "/api/v1/sessions", body, JSON))
    for fragment in (
        "a=candidate:" + "1 " * 4000,
        "a=mid:" + "x" * 4000,
        "a=candidate:1 1 udp 99999999999999999999 ::1 9 typ host",
    ):
        probes.append(Probe("trickle", "PATCH", "{viewer}", fragment.encode(), TRICKLE))
    return probes


ROUTES = [
    ("GET", "/api/v1/sessions"),
    ("POST", "/api/v1/sessions"),
    ("GET", "/api/v1/sessions/{id}"),
    ("PATCH", "/api/v1/sessions/{id}"),
    ("DELETE", "/api/v1/sessions/{id}"),
    ("GET", "/api/v1/sessions/{id}/planes"),
    ("POST", "/api/v1/sessions/{id}/tokens"),
    ("GET", "/api/v1/sessions/{id}/tokens"),
    ("DELETE", "/api/v1/sessions/{id}/tokens/{token}"),
    ("GET", "/api/v1/sessions/{id}/viewers"),
    ("DELETE", "/api/v1/sessions/{id}/viewers/{viewer}"),
    ("OPTIONS", "/whep/{session}"),
    ("POST", "/whep/{session}"),
    ("OPTIONS", "/whep/{session}/{viewer}"),
    ("PATCH", "/whep/{session}/{viewer}"),
    ("DELETE", "/whep/{session}/{viewer}"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/api/v1/openapi.json"),
    ("GET", "/"),
]
"""Every route the server has (the OpenAPI document's and the console page)."""
FIELDS = ["id", "source", "name", "labels", "encoder", "max_viewers", "role", "ttl_seconds", "single_use"]
SOURCE_SCHEMES = ["synthetic", "vfio", "vfio-cdev", "vfio-fd", "qemu-dbus", "qemu-dbus+qmp", "file", ""]


def generated(offer: str, examples: int, seed: int) -> tuple[list[Probe], list[str | bytes]]:
    """`examples` generated probes of each kind, and as many data-channel messages."""
    try:
        from hypothesis import strategies as st  # noqa: PLC0415 - only the abuse bench needs it
    except ImportError:
        raise SystemExit(f"this bench needs hypothesis: {INSTALL_TEST_EXTRAS}") from None

    numbers = st.one_of(
        st.integers(),
        st.integers(min_value=-(10**400), max_value=10**400),
        st.floats(),
        st.sampled_from([0, -1, 2**63]),
    )
    scalars = st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=40))
    values = st.recursive(
        scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    )
    objects = st.fixed_dictionaries({}, optional={field: values for field in FIELDS}) | st.fixed_dictionaries(
        {"encoder": st.fixed_dictionaries({}, optional={k: values for k in ("bitrate", "fps", "keyframe_interval")})}
    )
    segment = st.one_of(st.just("default"), st.just(TARGET), st.text(min_size=1, max_size=300)).map(
        lambda text: quote(text, safe="")
    )
    content_types = st.sampled_from([JSON, SDP, TRICKLE, "text/plain", None, "application/json; charset=latin-1"])

    def body_for(route: tuple[str, str]) -> Any:
        def encode(value: Any) -> bytes:
            return json.dumps(value).encode() if not isinstance(value, bytes) else value

        return st.one_of(objects, values, st.binary(max_size=64)).map(encode)

    def api_probe(route: tuple[str, str]) -> Any:
        method, template = route
        session = TARGET if method in ("DELETE", "PATCH") and "viewer" not in template else "default"
        return st.builds(
            lambda ids, body, content_type: Probe(
                "api",
                method,
                template.replace("{id}", ids[0] if ids[0] != "default" else session)
                .replace("{session}", ids[0])
                .replace("{token}", ids[1])
                .replace("{viewer}", ids[1]),
                body,
                content_type,
            ),
            st.tuples(segment, segment),
            body_for(route),
            content_types,
        )

    api = st.sampled_from(ROUTES).flatmap(api_probe)
    lines = offer.splitlines()
    edits = st.lists(
        st.tuples(
            st.integers(0, len(lines) - 1), st.sampled_from(["drop", "repeat", "garble", "cut"]), st.text(max_size=30)
        ),
        min_size=1,
        max_size=6,
    )
    offers = st.one_of(edits.map(lambda e: _edit(lines, e)), st.text(max_size=200)).map(
        lambda sdp: Probe("whep-offer", "POST", "/whep/default", sdp.encode("utf-8", "surrogatepass"), SDP)
    )
    candidate = st.builds(
        "a=candidate:{} {} {} {} {} {} typ {}".format,
        st.text(max_size=8), numbers, st.sampled_from(["udp", "tcp", "x"]), numbers,
        st.sampled_from(["127.0.0.1", "::1", "999.1.1.1", "host.example", ""]), numbers,
        st.sampled_from(["host", "srflx", "relay", "x"]),
    )  # fmt: skip
    fragment_line = st.one_of(
        candidate, st.sampled_from(["a=end-of-candidates", "m=video 9 x 0", "a=mid:0"]), st.text(max_size=40)
    )
    fragments = st.lists(fragment_line, max_size=80).map(
        lambda f: Probe("trickle", "PATCH", "{viewer}", "\r\n".join(f).encode("utf-8", "surrogatepass"), TRICKLE)
    )
    sources = st.one_of(
        st.builds("{}:{}".format, st.sampled_from(SOURCE_SCHEMES), st.text(max_size=80)), st.text(max_size=80)
    ).map(
        lambda url: Probe(
            "source-url", "POST", "/api/v1/sessions", json.dumps({"id": "abuse-source", "source": url}).encode(), JSON
        )
    )
    event = st.fixed_dictionaries(
        {"type": st.sampled_from(["key", "pointer", "wheel", "delay", "x"])},
        optional={k: values for k in ("code", "down", "x", "y", "buttons", "dx", "dy", "ms")},
    ).map(json.dumps)
    messages = st.one_of(event, st.binary(max_size=600), st.text(max_size=600), values.map(json.dumps))

    probes: list[Probe] = []
    for strategy in (api, offers, fragments, sources):
        probes += _draw(strategy, examples, seed)
    return probes, _draw(messages, examples, seed)


def _edit(lines: list[str], edits: list[tuple[int, str, str]]) -> str:
    """An offer's lines with some dropped, repeated, garbled or cut short."""
    edited = list(lines)
    for position, action, text in edits:
        if not edited:
            break
        index = position % len(edited)
        if action == "drop":
            del edited[index]
        elif action == "repeat":
            edited.insert(index, edited[index])
        elif action == "garble":
            edited[index] = edited[index][: len(edited[index]) // 2] + text
        else:
            edited = edited[:index]
    return "".join(line + "\r\n" for line in edited)


def _draw(strategy: Any, count: int, seed: int) -> list[Any]:
    """`count` examples of `strategy`, the same ones for the same seed."""
    from hypothesis import HealthCheck, Phase, given, settings  # noqa: PLC0415
    from hypothesis import seed as seeded  # noqa: PLC0415

    found: list[Any] = []

    def collect(value: Any) -> None:
        found.append(value)

    run = seeded(seed)(
        settings(max_examples=count, database=None, phases=[Phase.generate], deadline=None,
                 suppress_health_check=list(HealthCheck))(given(strategy)(collect))
    )  # fmt: skip
    run()
    return found[:count]
