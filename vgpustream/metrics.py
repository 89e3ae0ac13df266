"""Prometheus metrics, read from the live sessions at scrape time (nothing is counted twice)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from itertools import accumulate

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from vgpustream.capture.stats import Histogram
from vgpustream.registry import SessionRegistry
from vgpustream.session import Session
from vgpustream.sources.base import SourceState
from vgpustream.transports.relays import IceServerWatch

PREFIX = "vgpustream_session"


class SessionCollector(Collector):
    def __init__(self, sessions: SessionRegistry) -> None:
        self._sessions = sessions

    def collect(self) -> Iterator[Metric]:
        labels = ["session"]
        fps = GaugeMetricFamily(f"{PREFIX}_fps", "Encoded frames per second (last 2 s)", labels=labels)
        bitrate = GaugeMetricFamily(f"{PREFIX}_bitrate_bps", "Encoded bits per second (last 2 s)", labels=labels)
        viewers = GaugeMetricFamily(f"{PREFIX}_viewers", "Viewers of the session", labels=labels)
        state = GaugeMetricFamily(
            f"{PREFIX}_source_state", "1 for the source's current state", labels=[*labels, "state"]
        )
        counters = {
            name: CounterMetricFamily(f"{PREFIX}_{name}", text, labels=labels)
            for name, text in (
                ("frames_captured", "Frames captured from the source"),
                ("frames_encoded", "Frames encoded (once for all viewers)"),
                ("keyframes", "Keyframes encoded"),
                ("bytes_encoded", "Bytes of encoded video"),
                ("capture_errors", "Failed captures"),
                ("dropped_packets", "Packets dropped for slow viewers"),
                ("input_invalid", "Invalid input messages dropped"),
                ("audio_packets", "Opus packets encoded (once for all viewers)"),
                ("audio_bytes", "Bytes of encoded sound"),
                ("clipboard_to_guest", "Clipboard texts viewers gave the guest"),
                ("clipboard_from_guest", "Clipboard texts the guest gave the viewers"),
                ("clipboard_refused", "Clipboard texts refused (too large, not Unicode, not allowed)"),
                ("microphone_starts", "Times a viewer's microphone went live"),
                ("microphone_packets", "Pieces of microphone sound that reached the guest"),
                ("microphone_refused", "Microphone requests and sound refused (not allowed, a second one, bounds)"),
            )
        }
        encode = HistogramMetricFamily(f"{PREFIX}_encode_seconds", "Time to encode one frame", labels=labels)
        glass_to_glass = HistogramMetricFamily(
            f"{PREFIX}_glass_to_glass_seconds",
            "From a frame's capture to a viewer's screen, as viewers' browsers measured it (abs-capture-time)",
            labels=labels,
        )
        per_rendition = RenditionMetrics()
        for session in self._sessions:
            per_rendition.add(session)
            sid = [session.id]
            capture, audience = session.capture, session.audience
            frames_per_second, bits_per_second = capture.rates()
            fps.add_metric(sid, frames_per_second)
            bitrate.add_metric(sid, bits_per_second)
            viewers.add_metric(sid, len(audience))
            for value in SourceState:
                state.add_metric([session.id, value.value], float(capture.snapshot.state is value))
            stats = capture.stats
            values = {
                "frames_captured": stats.frames_captured,
                "frames_encoded": stats.frames_encoded,
                "keyframes": stats.keyframes,
                "bytes_encoded": stats.bytes_encoded,
                "capture_errors": stats.capture_errors,
                "dropped_packets": audience.dropped_packets,
                "input_invalid": audience.stats.input_invalid,
                "audio_packets": session.sound_stats.packets,
                "audio_bytes": session.sound_stats.bytes,
                **dataclasses.asdict(audience.clipboard_stats),
                **dataclasses.asdict(audience.microphone.stats),
            }
            for name, family in counters.items():
                family.add_metric(sid, values[name])
            _add_histogram(encode, sid, capture.encode_times)
            _add_histogram(glass_to_glass, sid, audience.glass_to_glass)
        yield from (fps, bitrate, viewers, state, *counters.values(), encode, glass_to_glass)
        yield from per_rendition.families()


class RenditionMetrics:
    """The same figures per running rendition (labels session and rendition)."""

    def __init__(self) -> None:
        labels = ["session", "rendition"]
        prefix = "vgpustream_rendition"
        self._gauges = {
            "fps": GaugeMetricFamily(
                f"{prefix}_fps", "Frames the rendition encoded per second (last 2 s)", labels=labels
            ),
            "bitrate": GaugeMetricFamily(
                f"{prefix}_bitrate_bps", "Bits per second of the rendition (last 2 s)", labels=labels
            ),
            "seats": GaugeMetricFamily(
                f"{prefix}_seats", "Viewers and recordings that take the rendition", labels=labels
            ),
        }
        self._counters = {
            name: CounterMetricFamily(f"{prefix}_{name}", text, labels=labels)
            for name, text in (
                ("frames_encoded", "Frames the rendition encoded since it started"),
                ("keyframes", "Keyframes the rendition encoded since it started"),
                ("bytes_encoded", "Bytes the rendition encoded since it started"),
            )
        }

    def add(self, session: Session) -> None:
        for figures in session.rendition_figures():
            labels = [session.id, figures.rendition.name]
            for name, family in (*self._gauges.items(), *self._counters.items()):
                family.add_metric(labels, getattr(figures, name))

    def families(self) -> Iterator[Metric]:
        yield from (*self._gauges.values(), *self._counters.values())


class IceServerCollector(Collector):
    """Each configured STUN/TURN server's health, so that an operator sees a dead one before viewers do."""

    def __init__(self, watch: IceServerWatch) -> None:
        self._watch = watch

    def collect(self) -> Iterator[Metric]:
        labels = ["url"]
        up = GaugeMetricFamily("vgpustream_ice_server_up", "1 when the server's last attempt succeeded", labels=labels)
        last = GaugeMetricFamily(
            "vgpustream_ice_server_last_allocation_timestamp_seconds",
            "When the server last gave a TURN allocation or answered a STUN probe",
            labels=labels,
        )
        failures = CounterMetricFamily(
            "vgpustream_ice_server_failures", "Allocations or probes of the server that failed", labels=labels
        )
        for health in self._watch.health():
            up.add_metric([health.url], float(health.state == "up"))
            if health.last_allocation is not None:
                last.add_metric([health.url], health.last_allocation)
            failures.add_metric([health.url], health.failures)
        yield from (up, last, failures)


def _add_histogram(family: HistogramMetricFamily, labels: list[str], histogram: Histogram) -> None:
    cumulative = list(accumulate(histogram.counts))
    buckets = [(str(bound), count) for bound, count in zip(histogram.bounds, cumulative, strict=False)]
    family.add_metric(labels, [*buckets, ("+Inf", cumulative[-1])], sum_value=histogram.total)


def metrics_registry(sessions: SessionRegistry, ice_servers: IceServerWatch) -> CollectorRegistry:
    """A registry of its own (not the process-global one): the sessions, the ICE servers and the usual
    process metrics."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    registry.register(SessionCollector(sessions))
    registry.register(IceServerCollector(ice_servers))
    return registry
