"""The video encoders: H.264 (PyAV libx264) and VP8 (libvpx, for WebRTC without H.264). A session runs one
per rendition that some viewer watches (vgpustream.capture.pipeline), shared by every viewer of it."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from fractions import Fraction

import av
from av.video.frame import PictureType

from vgpustream.compat import UnsupportedLibrary, codec_options
from vgpustream.errors import VgpuStreamError

log = logging.getLogger(__name__)

TIME_BASE = Fraction(1, 90_000)  # the RTP video clock, so packets need no rescaling
QUALITY = 18
"""x264's constant rate factor: the quality every frame aims at, as far as the bitrate cap allows."""
ONE_THREAD_UP_TO = 1280 * 720
"""Pictures up to this many pixels are encoded by x264 on the calling thread, larger ones in 2 slices on
2 threads (one per core of the machine kind this is tuned for). The capture loop already keeps a second
core busy (it captures and converts the next frame while this one is encoded), and slices cost CPU:
measured on the 2-core machine kind (busy), x264's automatic choice (3 slice threads) took 12% more CPU
per 1280x720 frame than one thread (5.3 against 4.7 ms) and no less wall time, and with many sessions per
host CPU per frame is what counts. At 1920x1080 one thread's 8-11 ms per frame bounds the pipeline,
and 2 slices took no more CPU per frame: `bench pipeline` went from 0.85 to 0.73 of the naive path's
time per frame (medians of 4 runs each, taken in turn)."""
REFINE_RATE = 4
"""A refinement (the last picture encoded again once it stopped changing) may be sent at up to this many
times the bitrate. The bitrate cap holds moving pictures; a still one can be made sharp at once instead
of over seconds. Measured on the synthetic text page at 1920x1080 and 4 Mbit/s, its picture changing
for 3 s (an IDR at 2 s), then standing still: at 1x it read >= 45 dB after 1.5 s, at 2x 0.77 s, at 4x
0.43 s, at 8x 0.2 s; the 2 s after the stop took 0.98, 1.28, 1.24 and 1.21 MB."""


MIN_BITRATE = 100_000
"""Bits per second: the least any encoder is asked for."""


RUNGS = ((1, 1), (1.5, 3), (1.5, 6), (2, 12))
"""The ladder: each rung's (frame-rate divisor, bitrate divisor) of a session's settings, top first
(vgpustream.media.renditions). At 30 fps and 4 Mbit/s: 20 fps at 1.33 Mbit/s and at 0.67 Mbit/s (a 1 Mbit/s link
carries it with room for sound and keyframes), then 15 fps at 0.33 Mbit/s. The rate falls faster than the
frame rate: a screen's pictures change in places, and a frame rate kept up keeps typing and pointing live."""


@dataclass(frozen=True)
class EncoderSettings:
    """What a session's encoder produces. Keyframes are forced by the session, not by libx264."""

    bitrate: int = 4_000_000
    fps: int = 30
    keyframe_interval: float = 2.0
    rungs: int = len(RUNGS)
    """How many rungs of the ladder (RUNGS) the session's viewers may be on, the top among them: 1 keeps every
    viewer on these settings."""

    def __post_init__(self) -> None:
        if not MIN_BITRATE <= self.bitrate <= 100_000_000:
            raise VgpuStreamError("bitrate must be within 100 kbit/s .. 100 Mbit/s")
        if not 1 <= self.fps <= 120:
            raise VgpuStreamError("fps must be within 1..120")
        if not 0.5 <= self.keyframe_interval <= 60:
            raise VgpuStreamError("keyframe interval must be within 0.5..60 s")
        if not 1 <= self.rungs <= len(RUNGS):
            raise VgpuStreamError(f"rungs must be within 1..{len(RUNGS)}")


CODECS = ("h264", "vp8")
"""The codecs a session can encode, in the order a viewer is given the first its browser takes."""


class VideoEncoder(ABC):
    """Encodes yuv420p pictures at the settings' bitrate; forced keyframes only; (re)opened for each size."""

    def __init__(self, settings: EncoderSettings) -> None:
        self.settings = settings
        self._context: av.VideoCodecContext | None = None

    def encode(self, picture: av.VideoFrame, pts: int, keyframe: bool, refine: bool = False) -> list[av.Packet]:
        """Encode one yuv420p picture at `pts` (in TIME_BASE units); a keyframe if `keyframe`. A `refine`
        picture is the last one again, to sharpen it once it stopped changing."""
        context = self._context
        if context is None or (context.width, context.height) != (picture.width, picture.height):
            context = self._context = self._open(picture.width, picture.height)
            keyframe = True
        self._before(context, refine and not keyframe)
        picture.pts = pts
        picture.time_base = TIME_BASE
        picture.pict_type = PictureType.I if keyframe else PictureType.NONE
        return context.encode(picture)

    def close(self) -> None:
        """Free the codec and its threads now, not whenever the collector gets to it."""
        self._context = None

    def reconfigure(self, settings: EncoderSettings) -> None:
        """Take new settings; the next picture reopens the codec (and is a keyframe)."""
        self.settings = settings
        self._context = None

    @abstractmethod
    def _before(self, context: av.VideoCodecContext, refine: bool) -> None:
        """What the codec needs to know before the next picture (whether it is a refinement)."""

    @abstractmethod
    def _open(self, width: int, height: int) -> av.VideoCodecContext:
        """An open codec context for pictures of this size."""

    def _create(self, name: str, width: int, height: int) -> av.VideoCodecContext:
        """FFmpeg's encoder `name` for yuv420p pictures of this size on the RTP clock, not yet opened: one
        thread up to ONE_THREAD_UP_TO pixels, else two."""
        context = av.CodecContext.create(name, "w")
        context.width, context.height = width, height
        context.pix_fmt = "yuv420p"
        context.time_base = TIME_BASE
        context.framerate = Fraction(self.settings.fps, 1)
        context.thread_count = 1 if width * height <= ONE_THREAD_UP_TO else 2
        return context


class H264Encoder(VideoEncoder):
    """libx264, ultrafast + zerolatency, constrained baseline (no B-frames), SPS/PPS on every IDR.

    Rate control is a quality target capped by the bitrate (CRF with a one-second VBV buffer at the
    configured bitrate): a moving picture gets all the bitrate allows, and a picture that stops moving
    can be refined by encoding it again (`refine`) until it reaches the target, at a peak rate of
    REFINE_RATE times the bitrate, so it is sharp soon however little of the buffer motion left. A
    plain bitrate target would charge every frame 1/fps of the budget however long the screen stood
    still, and starve keyframes.

    The codec context is (re)opened for the size of the picture it is given, so a guest mode
    change only costs the next frame being an IDR.
    """

    def __init__(self, settings: EncoderSettings) -> None:
        super().__init__(settings)
        self._refining = False
        """Whether the open codec's peak rate is the refinements' (REFINE_RATE times the bitrate)."""
        self._can_refine_faster = True
        """Whether the running PyAV lets an open codec's peak rate be changed (found out at the first try)."""

    def _before(self, context: av.VideoCodecContext, refine: bool) -> None:
        """Set x264's peak rate for the next frame: the bitrate, or REFINE_RATE times it for a refinement.
        Where the running PyAV cannot be reached into, refinements keep to the bitrate (and take longer)."""
        if refine == self._refining or not self._can_refine_faster:
            return
        try:
            codec_options().set_int(context, "maxrate", self.settings.bitrate * (REFINE_RATE if refine else 1))
        except UnsupportedLibrary as error:
            log.warning("refining still pictures at the bitrate only: %s", error)
            self._can_refine_faster = False
            return
        self._refining = refine

    def x264_options(self) -> dict[str, str]:
        """The options libx264 is opened with (FFmpeg's names; x264's own in x264-params).

        `preset=ultrafast` already puts every analysis setting at its cheapest (x264 writes them into the
        stream: aq=0, subme=0, me=dia, analyse=0:0, trellis=0, deblock off; tune zerolatency adds
        rc_lookahead=0, no B-frames, sliced threads). Measured against variants on screen content
        (`vgpustream bench x264`, README "Encoder settings for screen content"): none cost less CPU at equal
        or better PSNR while keeping the bitrate cap."""
        kbps = self.settings.bitrate // 1000
        return {
            "preset": "ultrafast",
            "tune": "zerolatency",
            "profile": "baseline",
            "forced-idr": "1",
            "crf": str(QUALITY),
            # FFmpeg's own options, not x264's: FFmpeg passes a change of maxrate on to an open x264
            "maxrate": f"{kbps}k",
            "bufsize": f"{kbps}k",
            # keyframes come only when the session forces them (viewer joins, PLI/FIR, interval)
            "x264-params": "keyint=infinite:scenecut=0",
        }

    def _open(self, width: int, height: int) -> av.VideoCodecContext:
        context = self._create("libx264", width, height)
        context.thread_type = "SLICE"  # frame threads would hold each frame back by one
        context.options = self.x264_options()
        context.open()
        self._refining = False
        return context


VP8_SPEED = 8
"""libvpx's cpu-used in realtime mode: measured at 1280x720 (a moving picture, one thread), 8 took 8.1 ms of
CPU per frame, 12 and 16 no less (9.9, 9.2) and twice the bits; x264 ultrafast took 3.0 ms on the same frames."""


class Vp8Encoder(VideoEncoder):
    """libvpx VP8 in realtime mode, no alt-ref frames (no frame held back), keyframes only when forced: for
    browsers whose WebRTC has no H.264 (stock Firefox without the OpenH264 plugin)."""

    def _before(self, context: av.VideoCodecContext, refine: bool) -> None:
        """Nothing: a refinement is the picture encoded again at the bitrate (FFmpeg passes no change of
        libvpx's rate to an open codec)."""

    def _open(self, width: int, height: int) -> av.VideoCodecContext:
        context = self._create("libvpx", width, height)
        context.bit_rate = self.settings.bitrate
        context.gop_size = 2**30  # keyframes come only when the session forces them
        context.options = {
            "deadline": "realtime",
            "cpu-used": str(VP8_SPEED),
            "lag-in-frames": "0",
            "auto-alt-ref": "0",
            "error-resilient": "1",  # a lost packet spoils one frame, not the ones that follow
            "max-intra-rate": "300",  # a keyframe is at most 3 frames' worth of bits
        }
        context.open()
        return context


def make_encoder(codec: str, settings: EncoderSettings) -> VideoEncoder:
    """A new encoder of `codec` (one of CODECS)."""
    return {"h264": H264Encoder, "vp8": Vp8Encoder}[codec](settings)
