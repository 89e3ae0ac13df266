"""Every JSON body of the HTTP interface, declared once.

Request bodies are decoded and validated by these Structs (vgpustream.api.requests.read_json), responses are
encoded from them (json_response), and the OpenAPI document's components are generated from them
(vgpustream.api.openapi), so the document and the handlers cannot drift.
A Struct's docstring is its schema's description; a field's description is its Meta's.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Annotated, Any, Literal, TypeVar

import msgspec
from aiohttp import web
from msgspec import UNSET, Meta, Struct, UnsetType

from vgpustream.control.audit import EVENT_TYPES
from vgpustream.control.roles import GRANTED_ROLES, ROLES
from vgpustream.errors import VgpuStreamError
from vgpustream.input.clipboard import ACCESS
from vgpustream.input.events import MAX_DISPLAY_EDGE, MAX_SCALE, MIN_DISPLAY_EDGE, MIN_SCALE, ResizeEvent
from vgpustream.input.microphone import ACCESS as MICROPHONE_ACCESS
from vgpustream.media.encoder import CODECS, RUNGS, EncoderSettings
from vgpustream.media.renditions import QUALITIES
from vgpustream.recording.recorder import RecordingState
from vgpustream.sources.base import SourceState

MAX_NAME = 200
MAX_SOURCE = 1024
MAX_LABELS = 32
MAX_LABEL_VALUE = 256
MAX_VIEWERS_LIMIT = 256
MAX_RECORDING_SECONDS = 86_400
"""The longest a recording may be asked to run (a day); it stops by itself then."""
DEFAULT_RECORDING_SECONDS = 3600
MIN_RECORDING_BYTES = 1024 * 1024

# Literal[tuple] is Literal[*tuple]: the allowed values are the domain's own, not a copy of them
Role = Literal[ROLES]
Transport = Literal["webrtc", "websocket"]
"""What carries a viewer's stream."""
ClipboardAccess = Annotated[
    Literal[ACCESS],
    Meta(
        description="What the token's viewers may do with the guest's clipboard (default: read for a view "
        "token, readwrite for a control token; a view token is never readwrite)"
    ),
]
MicrophoneAccess = Annotated[
    Literal[MICROPHONE_ACCESS],
    Meta(
        description="Whether the token's viewers may send their microphone into the guest (use; only a control "
        "token, and only one viewer's at a time), or not (none, the default)"
    ),
]
State = Annotated[
    Literal[tuple(state.value for state in SourceState)],
    Meta(
        description="The source: being opened (starting), showing a picture (streaming), its display off "
        "(no_signal), or not reachable and retried (lost)"
    ),
]
Sound = Annotated[
    bool,
    Meta(
        description="Whether the guest's sound reaches the session now (QEMU with `-audiodev dbus` and "
        "`-display dbus,audiodev=ID`); viewers whose WHEP offer has an audio section get it as Opus"
    ),
]
Microphone = Annotated[
    bool,
    Meta(
        description="Whether the guest takes sound in now (QEMU's D-Bus audio with a recording device, e.g. "
        '`-device hda-duplex`): a viewer whose token may asks for it with {"type": "microphone", "on": true}'
    ),
]
Clipboard = Annotated[
    bool,
    Meta(
        description="Whether the guest's clipboard is reachable (QEMU's D-Bus display); text goes both ways "
        'on the input channel as {"type": "clipboard", "text", "more"}'
    ),
]
DateTime = Annotated[str, Meta(extra_json_schema={"format": "date-time"})]
"""RFC 3339 UTC time, as vgpustream.api.tokens.timestamp writes it."""
Name = Annotated[str, Meta(max_length=MAX_NAME)]
LabelKey = Annotated[str, Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-/]{0,62}$")]
Labels = Annotated[
    dict[LabelKey, Annotated[str, Meta(max_length=MAX_LABEL_VALUE)]],
    Meta(max_length=MAX_LABELS),
]
Bitrate = Annotated[int, Meta(ge=100_000, le=100_000_000)]
Fps = Annotated[int, Meta(ge=1, le=120)]
KeyframeInterval = Annotated[float, Meta(ge=0.5, le=60)]
Rungs = Annotated[
    int, Meta(ge=1, le=len(RUNGS), description="rungs of the ladder its viewers may be on, the top among them")
]
Quality = Literal[QUALITIES]  # type: ignore[valid-type]  # vgpustream.media.renditions: auto and each rung
MaxViewers = Annotated[int, Meta(ge=1, le=MAX_VIEWERS_LIMIT)]
DisplayEdge = Annotated[int, Meta(ge=MIN_DISPLAY_EDGE, le=MAX_DISPLAY_EDGE)]
T = TypeVar("T")


def given(value: T | UnsetType, current: T) -> T:
    """A request field's value, or `current` where the request left it out."""
    return current if value is UNSET else value


def _printable(**texts: str | UnsetType) -> None:
    """Refuse control characters in `texts` (msgspec turns the ValueError into a ValidationError at its Struct)."""
    for name, text in texts.items():
        if text is not UNSET and not text.isprintable():
            raise ValueError(f"`{name}` must be printable text")


class Closed(Struct, forbid_unknown_fields=True):
    """A JSON object with exactly the fields its Struct declares."""


# --- requests ---------------------------------------------------------------------------------------------


class Encoder(Closed):
    """Encoder settings; in a request, each field left out keeps its current (or default) value."""

    bitrate: Bitrate | UnsetType = UNSET
    fps: Fps | UnsetType = UNSET
    keyframe_interval: KeyframeInterval | UnsetType = UNSET
    rungs: Rungs | UnsetType = UNSET

    def settings(self, current: EncoderSettings) -> EncoderSettings:
        """`current` with the fields this one sets."""
        return EncoderSettings(
            bitrate=given(self.bitrate, current.bitrate),
            fps=given(self.fps, current.fps),
            keyframe_interval=given(self.keyframe_interval, current.keyframe_interval),
            rungs=given(self.rungs, current.rungs),
        )


class SessionCreate(Closed):
    """A new session: its id, source URL and, optionally, its name, labels, encoder settings and viewer limit."""

    id: Annotated[str, Meta(pattern="^[a-z0-9][a-z0-9_-]{0,62}$")]
    source: Annotated[str, Meta(max_length=MAX_SOURCE)]
    name: Name = ""
    labels: Labels = msgspec.field(default_factory=dict)
    encoder: Encoder = msgspec.field(default_factory=Encoder)
    max_viewers: MaxViewers | UnsetType = UNSET

    def __post_init__(self) -> None:
        _printable(id=self.id, source=self.source, name=self.name)


class Display(Closed):
    """Ask the guest for this display size (device pixels; scale is the viewer's devicePixelRatio, from which the
    display's size in millimetres follows); not stored. The source bounds it further (its planes say whether it
    is resizable)."""

    width: DisplayEdge
    height: DisplayEdge
    scale: Annotated[float, Meta(ge=MIN_SCALE, le=MAX_SCALE)] = 1.0

    def event(self) -> ResizeEvent:
        return ResizeEvent(width=self.width, height=self.height, scale=self.scale)


class SessionUpdate(Closed):
    """A live change of a session; each field left out stays as it is."""

    name: Name | UnsetType = UNSET
    labels: Labels | UnsetType = UNSET
    encoder: Encoder | UnsetType = UNSET
    max_viewers: MaxViewers | UnsetType = UNSET
    display: Display | UnsetType = UNSET

    def __post_init__(self) -> None:
        _printable(name=self.name)


class TokenCreate(Closed):
    """A viewer token to issue (a view token by default, for --token-ttl seconds)."""

    role: Role = "view"
    ttl_seconds: Annotated[int, Meta(ge=1, description="at most --max-token-ttl")] | UnsetType = UNSET
    single_use: bool = False
    clipboard: ClipboardAccess | UnsetType = UNSET
    microphone: MicrophoneAccess = "none"
    max_viewers: (
        Annotated[
            int, Meta(ge=1, le=MAX_VIEWERS_LIMIT, description="viewers it may have at once (--token-max-viewers)")
        ]
        | UnsetType
    ) = UNSET
    transport: Annotated[
        Literal["auto", "webrtc", "websocket"],
        Meta(description="what the console link uses: auto tries WebRTC and falls back to the WebSocket"),
    ] = "auto"
    quality: Annotated[
        Quality, Meta(description="the rung of the session's ladder the console link stays on; auto: by its link")
    ] = "auto"

    def console(self) -> dict[str, str]:
        """What the console link is to use: CONSOLE_CHOICES."""
        return {"transport": self.transport, "quality": self.quality}


CONSOLE_CHOICES = ("transport", "quality")
"""The console link's query parameters that a token request chooses."""


class RecordingCreate(Closed):
    """A recording to start."""

    label: Name = ""
    max_seconds: Annotated[int, Meta(ge=1, le=MAX_RECORDING_SECONDS)] = DEFAULT_RECORDING_SECONDS
    max_bytes: (
        Annotated[int, Meta(ge=MIN_RECORDING_BYTES, description="at most --recording-retention-bytes (its default)")]
        | UnsetType
    ) = UNSET

    def __post_init__(self) -> None:
        _printable(label=self.label)


REQUESTS: tuple[type[Closed], ...] = (SessionCreate, SessionUpdate, TokenCreate, RecordingCreate)


# --- responses --------------------------------------------------------------------------------------------


class ErrorDetail(Closed):
    code: str
    message: str


class Error(Closed):
    """Every error: a code (vgpustream.api.errors.STATUS) and a message for people."""

    error: ErrorDetail


class Plane(Closed):
    fourcc: str
    fourcc_code: int
    modifier: int
    width: int
    height: int
    stride: int
    size: int
    dmabuf_id: int | UnsetType = UNSET
    region_index: int | UnsetType = UNSET


class PlaneSet(Closed):
    primary: Plane | None
    cursor: Plane | None


class Pointer(Closed):
    x: int
    y: int
    hot_x: int
    hot_y: int
    visible: bool


class Edid(Closed):
    max_xres: int
    max_yres: int


class Planes(Closed):
    state: State
    primary: Plane | None
    cursor: Plane | None
    pointer: Pointer | None
    edid: Edid | None
    sound: Sound
    clipboard: Clipboard
    resizable: Annotated[
        bool, Meta(description="Whether the guest can be asked for a display size (PATCH the session's display)")
    ]


class Head(Closed):
    """One display head of the session's VM (QEMU: one Console; `-device virtio-vga,max_outputs=N` has N)."""

    console: Annotated[int, Meta(ge=0, description="The head's number: what a QEMU source URL's ?console= takes")]
    label: Annotated[str, Meta(description="QEMU's name for it: the display device's id and the head's index")]
    width: int
    height: int
    state: Annotated[
        State, Meta(description="What the head shows: no_signal for a head the guest has not turned on (not an error)")
    ]
    session: Annotated[str | None, Meta(description="The session showing this head; null while there is none")]


class HeadList(Closed):
    """The heads of the session's VM, in order; a source of one head (a vGPU, the synthetic desktop) has one."""

    heads: list[Head]


class Stats(Closed):
    frames_captured: int
    pixels_captured: Annotated[int, Meta(description="the pixels of the frames captured, all together")]
    pixels_changed: Annotated[
        int, Meta(description="of pixels_captured, those the source reported changed (its damage rectangles)")
    ]
    frames_encoded: int
    keyframes: int
    frames_repeated: int
    bytes_encoded: int
    capture_errors: int
    input_events: int
    input_invalid: int
    input_refused: int
    keyframe_requests_limited: int
    viewers_flooding: Annotated[int, Meta(description="viewers disconnected for sending messages too fast")]
    rung_changes: Annotated[int, Meta(description="viewers moved down or up a rung by their link")]
    joins_replayed: Annotated[int, Meta(description="viewers that started from the replay since the keyframe")]
    joins_on_a_keyframe: Annotated[
        int, Meta(description="viewers that started from a fresh keyframe (a replay would have shown the past)")
    ]
    resize_requests: int
    resizes_applied: int
    resizes_failed: int
    viewers: int
    bitrate: int
    dropped_packets: int
    audio_packets: int
    audio_bytes: int
    clipboard_to_guest: int
    clipboard_from_guest: int
    clipboard_refused: int
    microphone_starts: Annotated[int, Meta(description="times a viewer's microphone went live")]
    microphone_packets: Annotated[int, Meta(description="pieces of microphone sound that reached the guest")]
    microphone_refused: Annotated[int, Meta(description="refused microphone requests and sound")]
    fps: float
    encode_ms: float | None


class Rendition(Closed):
    """One encoded stream of the session, running while a viewer (or a recording) takes it."""

    codec: Literal[CODECS]
    rung: Annotated[int, Meta(description="0 is the session's settings; each rung below halves the frame rate")]
    width: Annotated[int | None, Meta(description="of the pictures it encodes; null before its first")]
    height: int | None
    fps: Annotated[float, Meta(description="frames encoded per second, last 2 s")]
    bitrate: Annotated[int, Meta(description="bits per second it sends, last 2 s")]
    seats: Annotated[int, Meta(description="viewers and recordings that take it")]
    frames_encoded: int
    keyframes: int


class Session(Closed):
    id: str
    source: str
    name: str
    labels: dict[str, str]
    encoder: Encoder
    max_viewers: int
    state: State
    message: Annotated[
        Annotated[str, Meta(max_length=MAX_NAME + 1)] | None,
        Meta(
            description="Why capturing the source last failed (at most 200 characters and an ellipsis); "
            "null once a capture step succeeds"
        ),
    ]
    planes: PlaneSet
    recordings: Annotated[int, Meta(description="recordings of the session running now")]
    sound: Sound
    clipboard: Clipboard
    microphone: Microphone
    stats: Stats
    renditions: Annotated[list[Rendition], Meta(description="what the session encodes now (none while unwatched)")]


class SessionList(Closed):
    sessions: list[Session]


class Token(Closed, kw_only=True):
    id: str
    role: Role
    clipboard: ClipboardAccess
    microphone: MicrophoneAccess = "none"
    """A default, so that a gateway reads a host that predates it (such a host grants none)."""
    created_at: DateTime
    expires_at: DateTime
    single_use: bool
    used: bool
    revoked: bool
    max_viewers: Annotated[int, Meta(description="viewers the token may have at once")]


class IssuedToken(Token):
    token: str
    console_url: str
    whep_url: str
    websocket_url: Annotated[
        str, Meta(description="GET /ws/{id}: the WebSocket transport, the token in its first message")
    ]


class TokenList(Closed):
    tokens: list[Token]
    next: Annotated[str | None, Meta(description="the next page, null when this one is the last so far")]


class ViewerLink(Closed):
    quality: Literal["good", "poor"]
    loss: Annotated[float, Meta(description="share of packets lost for good, last 4 s")]
    rtt_ms: int | None
    dropped: Annotated[int, Meta(description="packets dropped for this viewer (it fell behind)")]
    estimate_bps: Annotated[
        int | None,
        Meta(description="what the link is estimated to carry: measured by the server, or the receiver's REMB"),
    ]
    measured: Annotated[
        bool, Meta(description="whether estimate_bps is measured from the viewer's transport-cc feedback")
    ]


class Viewer(Closed):
    id: str
    role: Annotated[
        Literal[GRANTED_ROLES],
        Meta(description="its token's role, or operator for a viewer that connected with an operator token"),
    ]
    token_id: str | None
    transport: Annotated[Transport, Meta(description="what carries its stream")]
    rendition: Annotated[
        str | None,
        Meta(description="the rendition it takes: its codec, and /rung below the top; null: no video it plays"),
    ]
    quality: Annotated[Quality, Meta(description="the rung it asked to stay on; auto: the ladder's choice")]
    created_at: DateTime
    state: str
    input_channel: bool
    dropped_packets: int
    link: ViewerLink | None


class ViewerList(Closed):
    viewers: list[Viewer]


class Recording(Closed):
    id: str
    session_id: str
    label: str
    max_seconds: int
    max_bytes: int
    started_at: DateTime
    stopped_at: DateTime | None
    state: Annotated[
        Literal[tuple(state.value for state in RecordingState)],
        Meta(
            description="waiting for its first keyframe (starting), writing (recording), ended (stopped), "
            "ended by a write error such as a full disk (failed), or cut short by the server's death "
            "(interrupted); a file plays up to its last fragment in every case"
        ),
    ]
    reason: Annotated[
        str | None,
        Meta(
            description="why it ended: requested, max_seconds, max_bytes, session_stopped, server_stopped, "
            "or the write error ('No space left on device')"
        ),
    ]
    frames: Annotated[int, Meta(description="frames in the file")]
    audio_packets: Annotated[
        int,
        Meta(
            description="the session's 20 ms Opus packets in the file's sound track (a session that can have sound "
            "has one; silence is filled in where it sent none)"
        ),
    ]
    bytes: int
    duration: Annotated[float, Meta(description="seconds from the first frame to the last")]
    dropped: Annotated[int, Meta(description="frames left out while the disk was too slow")]
    audio_dropped: Annotated[int, Meta(description="Opus packets left out while the disk was too slow")]
    first_frame: int | None
    last_frame: Annotated[
        int | None,
        Meta(description="the session's frames_encoded count at the first and the last frame recorded"),
    ]
    href: str
    file: str
    file_link: Annotated[
        str,
        Meta(
            description="the file's address signed for an hour (?expires=&signature=), which works without a "
            "token, for a browser's <video> (Range requests included); a restart of the server ends it"
        ),
    ]


class RecordingList(Closed):
    recordings: list[Recording]


class Event(Struct):
    """An audit event; its other fields depend on its type: viewer, token (an id, never a secret), role, remote,
    user_agent (viewer.joined); recording, label, state, reason, frames, bytes (recording.*); expires_at
    (RFC 3339), single_use (token.created)"""

    id: int
    time: Annotated[DateTime, Meta(description="when it happened, to the millisecond")]
    type: Literal[EVENT_TYPES]
    session: str | None


class EventPage(Closed):
    events: list[Event]
    next: Annotated[str | None, Meta(description="the next page, null when this one is the last so far")]


class Health(Closed):
    status: str


class IceServerState(Closed):
    """A configured STUN or TURN server as the server last found it (it does not decide readiness: viewers
    are answered without its candidates)."""

    url: str
    state: str
    """unknown (no attempt has ended yet), up or down."""
    last_allocation: str | None
    """When it last gave a TURN allocation or answered a STUN probe (RFC 3339)."""
    failures: int
    error: str | None


class Readiness(Closed):
    """Whether the server is ready; what is wrong only for the operator token (else only `status`)."""

    status: Literal["ready", "not ready"]
    node: Annotated[
        str | UnsetType,
        Meta(description="this host's node name (--node-name), by which a gateway that found it in DNS routes to it"),
    ] = UNSET
    database: bool | UnsetType = UNSET
    lost_sessions: list[str] | UnsetType = UNSET
    ice_servers: list[IceServerState] | UnsetType = UNSET


SCHEMA_REF = "#/components/schemas/{name}"


def components(*extra: type[Struct]) -> dict[str, Any]:
    """The OpenAPI components/schemas of every Struct here that a body is declared with, and of `extra` (the
    gateway's own)."""
    structs = (*REQUESTS, Error, SessionList, Planes, HeadList, IssuedToken, TokenList, ViewerList, RecordingList)
    _, schemas = msgspec.json.schema_components(
        (*structs, EventPage, Health, Readiness, *extra), ref_template=SCHEMA_REF
    )
    for schema in schemas.values():
        if "description" in schema:  # a docstring, indented as the source is
            schema["description"] = " ".join(inspect.cleandoc(schema["description"]).split("\n"))
    return schemas


def schema_of(struct: type[Struct]) -> dict[str, Any]:
    """The schema a body of `struct` is declared with: a reference to its component."""
    return {"$ref": SCHEMA_REF.format(name=struct.__name__)}


def json_response(body: Struct, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    """A response whose JSON body is encoded from its Struct, so it has the shape the document declares."""
    return web.Response(body=msgspec.json.encode(body), status=status, headers=headers, content_type="application/json")


def bad_request(error: msgspec.ValidationError) -> VgpuStreamError:
    """A 400 naming the field and what it must be, from msgspec's message; client text in it is cut short."""
    text, at, path = str(error).partition(" - at ")
    if len(text) > MAX_ERROR_TEXT:
        text = text[:MAX_ERROR_TEXT] + "…"
    return VgpuStreamError(text + at + path)


MAX_ERROR_TEXT = 120
"""msgspec names an unknown field or a wrong enum value in its message: never echo more of it than this."""
