"""A session: one display's capture loop paired with the audience watching it (and its recordings)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import av

from vgpustream.audience.audience import Audience
from vgpustream.capture.loop import CaptureLoop
from vgpustream.capture.pipeline import Encoded
from vgpustream.control.store import SessionSpec
from vgpustream.input.resize import Resizer
from vgpustream.media.renditions import TOP, Rendition
from vgpustream.media.sound import DEFAULT_BITRATE as DEFAULT_SOUND_BITRATE
from vgpustream.media.sound import SoundEncoder, SoundStats
from vgpustream.media.thumbnail import ThumbnailCache
from vgpustream.recording.recorder import Recorders
from vgpustream.settings import ViewerRules
from vgpustream.sources import create_source
from vgpustream.sources.base import Cursor, SourceState


@dataclass(frozen=True)
class RenditionFigures:
    """A running rendition as the API and the metrics show it."""

    rendition: Rendition
    size: tuple[int, int] | None
    fps: float
    bitrate: float
    seats: int
    """Its viewers, and the recordings on the top rendition."""
    frames_encoded: int
    keyframes: int
    bytes_encoded: int


class Session:
    """A thin pairing: `capture` makes one encoded stream of the source, `audience` fans it out.

    The session is the capture loop's Output: the audience's viewers and the `recorders` both watch (a
    recording takes the top rendition), and both take the packets of its one sound encoder. While a
    recording runs the cursor is drawn into the picture, so that the file shows it.
    """

    def __init__(
        self,
        spec: SessionSpec,
        rules: ViewerRules,
        idle_sample_rate: float = 1.0,
        sound_bitrate: int = DEFAULT_SOUND_BITRATE,
    ) -> None:
        self.spec = spec
        self.capture = CaptureLoop(create_source(spec.source), spec.encoder, spec.id, 1 / idle_sample_rate)
        self.resizer = Resizer(self.capture.resize)
        """Applies control viewers' resize requests to the guest, paced."""
        self.thumbnails = ThumbnailCache()
        """JPEGs of the capture loop's latest thumbnail, for the session list."""
        self.audience = Audience(
            spec.max_viewers,
            rules,
            self.capture.input_sink,
            self.capture.request_keyframe,
            spec.encoder,
            sound=self.capture.sound is not None,
            clipboard=self.capture.clipboard,
            microphone=self.capture.microphone,
            resize=self.resizer.request,
        )
        self.recorders = Recorders()
        self.sound: SoundEncoder | None = None
        """The session's one Opus encoder, when its source has sound; its packets go to the viewers and
        the recordings, as the video's do."""
        if self.capture.sound is not None:
            self.sound = SoundEncoder(self._publish_sound, self._listened, self.capture.epoch, sound_bitrate)
            self.capture.sound.encoder = self.sound

    @property
    def sound_available(self) -> bool:
        """Whether the guest's sound reaches this session now."""
        return self.capture.sound is not None and self.capture.sound.available

    @property
    def clipboard_available(self) -> bool:
        """Whether the guest's clipboard is reachable now (QEMU's D-Bus clipboard)."""
        return self.capture.clipboard is not None and self.capture.clipboard.available

    @property
    def sound_stats(self) -> SoundStats:
        """The sound encoder's counters (all zero for a silent source)."""
        return self.sound.stats if self.sound is not None else SoundStats()

    def rendition_figures(self) -> list[RenditionFigures]:
        """The renditions encoded now, in order, each with its rates, counts and seats."""
        now = time.monotonic()
        figures = []
        for rendition, state in sorted(self.capture.renditions.items()):
            fps, bitrate = state.rate.rates(now)
            recordings = len(self.recorders) if rendition == TOP else 0
            stats = state.stats
            seats = self.audience.seats(rendition) + recordings
            figures.append(
                RenditionFigures(
                    rendition,
                    state.size,
                    fps,
                    bitrate,
                    seats,
                    stats.frames_encoded,
                    stats.keyframes,
                    stats.bytes_encoded,
                )
            )
        return figures

    @property
    def id(self) -> str:
        return self.spec.id

    async def open_source(self) -> None:
        """Open the source now, raising its error (a new session should fail loudly)."""
        await self.capture.open()

    def start(self) -> None:
        """Start capturing for the audience; a source not yet open is opened by the loop, retried until it opens."""
        self.capture.start(self)

    async def stop(self) -> None:
        """Close every viewer and recording, stop capturing, close the source. Waits for all of it."""
        await self.recorders.stop("session_stopped")
        await self.audience.close_viewers()
        await self.resizer.close()
        await self.capture.stop()

    async def update(self, spec: SessionSpec) -> None:
        """Take new settings (name, labels, encoder, viewer limit) without interrupting the stream."""
        if spec.encoder != self.spec.encoder:
            await self.capture.reconfigure(spec.encoder)
        self.audience.max_viewers = spec.max_viewers
        self.audience.set_encoder(spec.encoder)
        self.spec = spec

    # the capture loop's Output

    def renditions(self) -> set[Rendition]:
        return self.audience.renditions() | ({TOP} if self.recorders.watched() else set())

    def composites_cursor(self) -> bool:
        return self.recorders.watched() or self.audience.composites_cursor()

    def publish(self, encoded: dict[Rendition, Encoded], cursor: Cursor | None) -> None:
        self.audience.publish(encoded, cursor)
        top = encoded[TOP].packets if TOP in encoded else []
        self.recorders.publish(top, self.capture.stats.frames_encoded)

    def _listened(self) -> bool:
        return self.audience.listened() or self.recorders.watched()

    def _publish_sound(self, packets: list[av.Packet]) -> None:
        self.audience.publish_sound(packets)
        self.recorders.publish_sound(packets)

    def show_state(self, state: SourceState, error: str | None, resizable: bool) -> None:
        self.audience.show_state(state, error, resizable, self.spec.name or None)
