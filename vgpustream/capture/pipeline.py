"""The one way a frame travels before fan-out: capture -> convert -> encode, with stage timings."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field

import av

from vgpustream.capture.convert import FrameConverter
from vgpustream.capture.cursor import cursor_key, draw_cursor
from vgpustream.media.encoder import TIME_BASE, EncoderSettings, VideoEncoder, make_encoder
from vgpustream.media.renditions import TOP, Rendition
from vgpustream.media.thumbnail import Thumbnail, make_thumbnail
from vgpustream.sources.base import Cursor, Frame, Source

REFINE_SECONDS = 2.0  # at most this long of refinement frames after the picture stops changing
FAST_REFINE_SECONDS = 1.0  # the first this long of them may exceed the bitrate (encoder.REFINE_RATE)
QUIET_BYTES = 2000  # a refinement smaller than this added next to nothing
EARLY_SHARE = 0.3
"""A lower rung's frame may be encoded this share of its frame period before it is due: captures come at the
top's rate, with some jitter, and a rung whose rate does not divide the top's takes them in a pattern (20 of
30 a second: two, then one skipped)."""
QUIET_REFINEMENTS = 3  # that many quiet refinements in a row: the picture is as good as it gets


@dataclass
class StepResult:
    """What one pipeline step did. Times are in seconds; a stage that did not run stays 0."""

    captured: bool = False
    pixels: int = 0
    """The pixels of the frame captured (0 when none was)."""
    changed: int = 0
    """Of those, the ones its damage covers (all of them where the source cannot tell)."""
    repeated: bool = False
    """The source had nothing new, but a keyframe was requested, the drawn-in cursor moved, or the
    picture was still being refined: the last picture was encoded again."""
    packets: list[av.Packet] = field(default_factory=list)
    capture: float = 0.0
    convert: float = 0.0
    encode: float = 0.0

    @property
    def total(self) -> float:
        return self.capture + self.convert + self.encode


@dataclass
class Encoded:
    """What one rendition's encode stage made of a capture: its packets (none if it had nothing to encode)."""

    packets: list[av.Packet] = field(default_factory=list)
    repeated: bool = False
    """The last picture again (a keyframe asked for, the drawn-in cursor moved, a refinement)."""
    changed: bool = False
    """What it shows differs from what the rendition showed before (a new picture, or the drawn-in cursor
    moved); not for a refinement or a keyframe of the same picture."""
    seconds: float = 0.0
    size: tuple[int, int] | None = None
    """The size of the picture encoded (None if none was)."""


Decisions = dict[Rendition, tuple[bool, bool]]
"""For each running rendition: (whether its next frame must be a keyframe, whether its next changed frame
should be one), as its keyframe policy says (vgpustream.capture.keyframes)."""


@dataclass
class Capture:
    """What the capture stage hands the encode stage: a new picture, if there is one, and the cursor."""

    picture: av.VideoFrame | None
    """The converted picture (yuv420p, a frame of its own: the source may reuse its buffer at once)."""
    captured_at: float
    cursor: Cursor | None
    """The cursor to draw into the picture; None when viewers draw it themselves."""
    result: StepResult
    """What the capture stage did (whether it captured; its times)."""


class EncodeStage:
    """One rendition's encoder, and what it decides for each capture: a new picture, the last one again (a
    keyframe asked for, the drawn-in cursor moved) or a refinement of a picture that stopped changing.

    A picture that stops changing is refined: encoded again as P-frames (each one codes what the previous
    left out) for up to two seconds, until the encoder has next to nothing left to add, so a still screen
    ends up sharp; in the first second they may exceed the bitrate (H.264), so that it is sharp soon even
    when motion had used up the rate's buffer. A cursor is drawn into the encoded picture (never into the
    source's buffer, which may be the guest's memory); when it moves, the last picture is encoded again
    with the cursor in its new place. Runs on the encoder thread only.

    A lower rung's stage encodes at its own frame rate, a picture every `interval` seconds on average: a new
    picture that comes sooner waits (the newest one is encoded when it is due), and so do its refinements,
    which keep to its bitrate. A keyframe asked for is encoded at once.
    """

    def __init__(self, encoder: VideoEncoder, picture: av.VideoFrame | None = None, interval: float = 0.0) -> None:
        """`picture`: the last one captured, where the session ran before this rendition started."""
        self.encoder = encoder
        self.interval = interval
        self._last_picture = picture
        self._waiting: av.VideoFrame | None = None
        """A new picture not encoded yet (it came before the rendition's next frame was due)."""
        self._scheduled = 0.0
        """When (monotonic) the rendition's next frame is due, at its frame rate from the ones before."""
        self._drawn_cursor: tuple[int, int, int, bool] | None = None
        self._refinements = 0
        """How many more times the last picture may be encoded again to refine it."""
        self._quiet = 0
        """Refinements in a row that added next to nothing."""
        self._refined = 0
        """Refinements since the picture last changed."""

    @property
    def _due(self) -> float:
        """When (monotonic) the rendition's next frame may be encoded: EARLY_SHARE of its period before it is due."""
        return self._scheduled - EARLY_SHARE * self.interval

    def wants_encode(self, capture: Capture, keyframe: bool) -> bool:
        """Whether `encode` would do anything: take a new picture (and encode it, or keep it until it is
        due), or encode the last one again (a keyframe asked for, a moved cursor, a refinement)."""
        if capture.picture is not None or keyframe:
            return capture.picture is not None or self._last_picture is not None or self._waiting is not None
        if time.monotonic() < self._due:
            return False
        return self._waiting is not None or (
            self._last_picture is not None
            and (self._refinements > 0 or cursor_key(capture.cursor) != self._drawn_cursor)
        )

    def encode(self, capture: Capture, pts: int, keyframe: bool, periodic: bool) -> Encoded:
        """Encode a new picture (a keyframe if `keyframe` or `periodic`); without one, the last picture
        again if a keyframe is requested, the drawn-in cursor moved, or it is being refined."""
        cursor = capture.cursor
        result = Encoded()
        now = time.monotonic()
        if capture.picture is not None:
            self._waiting = capture.picture
        if not keyframe and now < self._due:
            return result  # a lower rung's next frame is not due yet: the newest picture waits
        if self._waiting is not None:
            self._last_picture, self._waiting = self._waiting, None
            keyframe = keyframe or periodic
        elif self.wants_encode(capture, keyframe):
            result.repeated = True
        else:
            return result
        self._scheduled = max(self._scheduled + self.interval, now)
        assert self._last_picture is not None
        moved = cursor_key(cursor) != self._drawn_cursor
        refining = result.repeated and not keyframe and not moved
        result.changed = not result.repeated or moved
        self._drawn_cursor = cursor_key(cursor)
        t0 = time.perf_counter()
        picture = self._last_picture if cursor is None else draw_cursor(self._last_picture, cursor)
        fast = refining and not self.interval and self._refined < self.encoder.settings.fps * FAST_REFINE_SECONDS
        result.packets = self.encoder.encode(picture, pts, keyframe, fast)
        for packet in result.packets:
            # its capture time (wall-clock seconds), which viewers send as abs-capture-time (vgpustream.compat)
            packet.opaque = capture.captured_at
        result.seconds = time.perf_counter() - t0
        result.size = (picture.width, picture.height)
        self._count_refinement(refining, sum(packet.size for packet in result.packets))
        return result

    def close(self) -> None:
        self.encoder.close()
        self._last_picture = None

    def _count_refinement(self, refining: bool, size: int) -> None:
        """A changed picture starts a refinement, which stops after REFINE_SECONDS or once it adds next to nothing."""
        if not refining:
            self._refinements, self._quiet, self._refined = round(self.encoder.settings.fps * REFINE_SECONDS), 0, 0
            return
        self._refinements -= 1
        self._refined += 1
        self._quiet = self._quiet + 1 if size < QUIET_BYTES else 0
        if self._quiet >= QUIET_REFINEMENTS:
            self._refinements = 0


def stage_interval(rendition: Rendition, top: EncoderSettings) -> float:
    """The frame period of `rendition`'s stage: none on the top rung (it takes every capture)."""
    return 0.0 if rendition.rung == 0 else 1 / rendition.settings(top).fps


class FramePipeline:
    """Pulls changed frames from a source and encodes them, in two stages: `capture` (the source and
    the conversion, once per frame) and `encode` (an `EncodeStage` per running rendition). `step` runs both
    on one thread for the top rendition; the capture loop runs each stage on a thread of its own, so the
    next frame is captured and converted while this one is encoded. Neither stage is thread-safe: one
    thread each, and one `Capture` in flight, handed over in order.

    When the source has nothing new, a requested keyframe re-encodes the last picture, so a
    still screen still lets a new viewer start.

    While nobody watches, `sample` only captures: a changed frame is held unconverted (the source
    keeps it valid until its next capture); the next `capture` converts it before it captures, and
    it is encoded if the source has nothing newer, so the first viewer's IDR shows the current picture.
    Both keep `thumbnail` current, at most once per `thumbnail_interval` seconds while encoding.
    """

    def __init__(self, source: Source, settings: EncoderSettings, thumbnail_interval: float = 1.0) -> None:
        self.source = source
        self.settings = settings
        self.stages: dict[Rendition, EncodeStage] = {}
        """An encode stage per running rendition (the encode stage's own state, as the stages are)."""
        self.thumbnail: Thumbnail | None = None
        self.thumbnail_interval = thumbnail_interval
        self._thumbnails = 0
        self._thumbnail_epoch = secrets.token_hex(4)  # tags stay unique across restarts of the server
        self._thumbnail_at = -float("inf")
        self._held: Frame | None = None
        self._converter = FrameConverter()
        self.epoch = time.time()
        """The clock's origin (wall-clock seconds): packet timestamps count from it, the sound's too."""
        self._last_pts = -1
        self._picture: av.VideoFrame | None = None
        """The last picture captured (the encode stage's), which a rendition that starts encodes first."""

    def close(self) -> None:
        """Free the encoders, the scaler and the pictures they hold, with their threads (x264's, and
        FFmpeg's slice threads of the scaler); a `step` after this starts afresh with an IDR.
        Neither stage may be running."""
        for stage in self.stages.values():
            stage.close()
        self.stages.clear()
        self._converter = FrameConverter()  # an unused one holds no scaler
        self._held = self._picture = None

    def reconfigure(self, settings: EncoderSettings) -> None:
        """New encoder settings for every rendition; each one's next picture is a keyframe. On the encoder thread."""
        self.settings = settings
        for rendition, stage in self.stages.items():
            stage.encoder.reconfigure(rendition.settings(settings))
            stage.interval = stage_interval(rendition, settings)

    def step(self, keyframe: bool = False, cursor: Cursor | None = None, periodic: bool = False) -> StepResult:
        """Capture, convert and encode one frame of the top rendition: an IDR if `keyframe`, or if `periodic`
        and the picture changed."""
        capture = self.capture(cursor)
        encoded = self.encode(capture, {TOP: (keyframe, periodic)})[TOP]
        result = capture.result
        result.packets, result.repeated, result.encode = encoded.packets, encoded.repeated, encoded.seconds
        return result

    def capture(self, cursor: Cursor | None = None) -> Capture:
        """The capture stage: the source's next frame if it changed (or the one held while nobody
        watched), converted; `cursor` is passed on to be drawn in."""
        result = StepResult()
        picture = None
        if self._held is not None:  # sampled while nobody watched: convert it while the source keeps it valid
            picture, self._held = self._converter.convert(self._held), None
        t0 = time.perf_counter()
        frame = self.source.next_frame()
        t1 = time.perf_counter()
        result.capture = t1 - t0
        if frame is None:
            return Capture(picture, time.time(), cursor, result)
        _count_damage(result, frame)
        if time.monotonic() - self._thumbnail_at >= self.thumbnail_interval:
            self._take_thumbnail(frame)
        picture = self._converter.convert(frame)
        result.convert = time.perf_counter() - t1
        return Capture(picture, frame.captured_at, cursor, result)

    def show(self, frame: Frame) -> Capture:
        """The capture stage for `frame`, which is not the source's (the NO SIGNAL picture while it is
        lost): encode it as an IDR, and the steps after it refine it like any picture that stopped changing."""
        return Capture(self._converter.convert(frame), frame.captured_at, None, StepResult(captured=True))

    def wants_encode(self, capture: Capture, decisions: Decisions) -> bool:
        """Whether `encode` would encode anything for any of the renditions decided (a new one always starts
        with a keyframe). Reads the encode stages' state: only while they do not run."""
        new = capture.picture is not None or self._picture is not None
        return any(
            self.stages[rendition].wants_encode(capture, keyframe) if rendition in self.stages else new
            for rendition, (keyframe, _periodic) in decisions.items()
        )

    def encode(self, capture: Capture, decisions: Decisions) -> dict[Rendition, Encoded]:
        """The encode stage: each rendition in `decisions` encodes the capture (or the last picture again) as
        its stage decides; a rendition no longer in them has its encoder freed, a new one gets an encoder."""
        for rendition in set(self.stages) - set(decisions):
            self.stages.pop(rendition).close()
        for rendition in decisions.keys() - self.stages.keys():
            encoder = make_encoder(rendition.codec, rendition.settings(self.settings))
            self.stages[rendition] = EncodeStage(encoder, self._picture, stage_interval(rendition, self.settings))
        if capture.picture is not None:
            self._picture = capture.picture
        pts = self._pts(capture.captured_at)
        return {
            rendition: self.stages[rendition].encode(capture, pts, keyframe, periodic)
            for rendition, (keyframe, periodic) in sorted(decisions.items())
        }

    def sample(self) -> StepResult:
        """Capture only (nobody watches): hold a changed frame and make a thumbnail of it."""
        t0 = time.perf_counter()
        frame = self.source.next_frame()
        result = StepResult(capture=time.perf_counter() - t0)
        if frame is not None:
            _count_damage(result, frame)
            self._converter.forget()  # the frame held before it goes unconverted, and its damage with it
            self._held = frame
            self._take_thumbnail(frame)
        return result

    def _take_thumbnail(self, frame: Frame) -> None:
        self._thumbnails += 1
        self.thumbnail = make_thumbnail(self._converter.packed(frame), f"{self._thumbnail_epoch}-{self._thumbnails}")
        self._thumbnail_at = time.monotonic()

    def _pts(self, captured_at: float) -> int:
        """RTP-clock timestamp of a capture time, strictly increasing as the encoders need."""
        pts = max(int((captured_at - self.epoch) / TIME_BASE), self._last_pts + 1)
        self._last_pts = pts
        return pts


def _count_damage(result: StepResult, frame: Frame) -> None:
    """Note in `result` that `frame` was captured, and how much of it changed."""
    result.captured = True
    result.pixels = frame.width * frame.height
    result.changed = result.pixels if frame.damage is None else sum(rect.area for rect in frame.damage)
