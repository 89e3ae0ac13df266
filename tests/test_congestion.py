"""What a viewer's transport-cc feedback says of its link (vgpustream.transports.congestion): its messages read as the
draft specifies, the rate a bottleneck carries, and an overrun told from a stall."""

from __future__ import annotations

import struct

import pytest

from vgpustream.transports.congestion import (
    MAX_FEEDBACK_RATE,
    MAX_STATUSES,
    QUEUE_LIMIT,
    TICK,
    UNBOUNDED,
    Delivery,
    PacketLog,
    parse_feedback,
)

PACKET = 1200
FPS = 20


def feedback(base: int, count: int, reference_ticks: int, chunks: list[int], deltas: bytes) -> bytes:
    """A feedback message's FCI, written field by field as draft-holmer-rmcat-transport-wide-cc-extensions-01
    lays it out (base, count, 24-bit reference time and feedback count, chunks, deltas, padding)."""
    fci = struct.pack("!HHI", base, count, (reference_ticks & 0xFFFFFF) << 8 | 7)
    fci += b"".join(struct.pack("!H", chunk) for chunk in chunks) + deltas
    return fci + bytes(-len(fci) % 4)


def test_a_feedback_message_reads_as_the_draft_lays_it_out():
    chunks = [
        0b0_01_0000000000011,  # a run of 3 packets received with small deltas
        0b1_1_01_00_10_01_00_00_00,  # seven two-bit symbols: small, lost, large, small, lost, lost, lost
        0b1_0_10000000000001,  # fourteen one-bit symbols: received, 12 lost, received
    ]
    deltas = bytes([4, 8, 0, 0]) + struct.pack("!h", -4) + bytes([1, 2, 40])  # one (two where large) per arrival
    base, arrivals = parse_feedback(feedback(65_530, 3 + 7 + 14, -2, chunks, deltas))
    assert base == 65_530
    ticks = [4, 12, 12, 12, None, 8, 9, None, None, None, 11, *[None] * 12, 51]
    expected = [None if tick is None else -2 * 0.064 + tick * TICK for tick in ticks]
    assert len(arrivals) == 24
    for got, want in zip(arrivals, expected, strict=True):
        assert got == pytest.approx(want) if want is not None else got is None


@pytest.mark.parametrize(
    ("fci", "why"),
    [
        (b"\x00\x01\x00", "shorter than its header"),
        (feedback(0, 20, 0, [0b0_01_0000000010100], b"\x01" * 5), "its deltas stop short"),
        (feedback(0, 2, 0, [0b1_1_11_01_00_00_00_00_00], b"\x01"), "a reserved status"),
        (feedback(0, MAX_STATUSES + 1, 0, [0b0_00_1111111111111] * 2, b""), "too many packets"),
        (feedback(0, 5, 0, [], b""), "no chunk for its packets"),
    ],
)
def test_a_malformed_feedback_message_is_refused_and_counted(fci: bytes, why: str):
    with pytest.raises(ValueError):
        parse_feedback(fci)
    log = PacketLog()
    for _ in range(10):
        log.number(PACKET)
    log.feedback(fci)
    assert log.malformed == 1, why
    assert log.rate_bps is None and not log.overrun


def test_a_storm_of_feedback_for_packets_never_sent_changes_nothing():
    judged: list[int] = []
    log = PacketLog(lambda: judged.append(1))
    for base in range(0, 65_536, 7):
        log.feedback(feedback(base, 3, 0, [0b0_01_0000000000011], bytes([1, 1, 1])))
    assert judged == [] and log.rate_bps is None and not log.overrun and log.malformed == 0


def through_bottleneck(frames: list[tuple[float, int]], kbps: float | None, queue_s: float = 0.1) -> list[Delivery]:
    """Each frame (when sent, bytes) sent back to back as packets through a bottleneck of `kbps` (None: none)
    with a `queue_s` buffer, then tail drop: what the receiver's feedback would report."""
    deliveries, busy_until = [], 0.0
    for sent_at, size in frames:
        for n in range(-(-size // PACKET)):
            sent = sent_at + n * 0.000_05
            if kbps is None:
                deliveries.append(Delivery(sent, PACKET, sent + 0.01))
                continue
            start = max(sent, busy_until)
            if start - sent > queue_s:
                deliveries.append(Delivery(sent, PACKET, None))
                continue
            busy_until = start + PACKET * 8 / (kbps * 1000)
            deliveries.append(Delivery(sent, PACKET, busy_until + 0.01))
    return deliveries


def stream(bps: float, seconds: float, start: float = 0.0) -> list[tuple[float, int]]:
    """Frames of a stream of `bps` at FPS, from `start`."""
    return [(start + n / FPS, round(bps / 8 / FPS)) for n in range(round(seconds * FPS))]


def reports(deliveries: list[Delivery]) -> list[list[Delivery]]:
    """`deliveries` as a browser reports them: a feedback message for every 100 ms of sending."""
    batches: list[list[Delivery]] = [[]]
    for delivery in deliveries:
        if batches[-1] and delivery.sent - batches[-1][0].sent >= 0.1:
            batches.append([])
        batches[-1].append(delivery)
    return batches


def judged(deliveries: list[Delivery]) -> PacketLog:
    """A log fed every report of `deliveries`."""
    log = PacketLog()
    for batch in reports(deliveries):
        log.take(batch)
    return log


def test_a_stream_a_bottleneck_carries_shows_its_rate_and_no_overrun():
    log = judged(through_bottleneck(stream(667_000, 5.0), kbps=1000))
    assert log.rate_bps == pytest.approx(1_000_000, rel=0.02)
    assert not log.overrun


def test_a_stream_a_bottleneck_cannot_carry_is_overrun_at_the_rate_it_carries():
    log = judged(through_bottleneck(stream(1_333_000, 3.0), kbps=1000))
    assert log.overrun
    assert log.rate_bps == pytest.approx(1_000_000, rel=0.05)


def test_a_link_without_a_bottleneck_shows_room_for_any_rung():
    log = judged(through_bottleneck(stream(4_000_000, 3.0), kbps=None))
    assert log.rate_bps == UNBOUNDED and not log.overrun


def test_a_keyframe_burst_queues_and_drains_without_an_overrun():
    frames = stream(667_000, 4.0)
    frames[40] = (frames[40][0], 12_000)  # a keyframe that takes 96 ms of the link
    log = PacketLog()
    for batch in reports(through_bottleneck(frames, kbps=1000)):
        log.take(batch)
        assert not log.overrun


def test_a_receiver_that_stalls_delays_its_packets_but_is_not_an_overrun():
    """A browser busy for a while stamps the packets of that time late: a queue that looks like it never
    drained, but the packets came no further apart than they were sent."""
    deliveries = through_bottleneck(stream(2_000_000, 3.0), kbps=None)
    stalled = [
        Delivery(d.sent, d.size, d.arrived + QUEUE_LIMIT * 4) if 1.5 <= d.sent < 2.2 and d.arrived else d
        for d in deliveries
    ]
    log = PacketLog()
    for batch in reports(stalled):
        log.take(batch)
        assert not log.overrun


def test_packets_are_numbered_on_16_bits_and_their_feedback_found_across_the_wrap():
    log = PacketLog()
    numbers = [log.number(PACKET) for _ in range(65_540)]
    assert numbers[65_535:] == [65_535, 0, 1, 2, 3]
    told: list[int] = []
    log = PacketLog(lambda: told.append(1))
    for _ in range(65_540):
        log.number(PACKET)
    log.feedback(feedback(65_534, 4, 0, [0b0_01_0000000000100], bytes([4, 0, 0, 0])))
    assert told == [1], "the four packets around the wrap were found"


def test_a_rung_whose_frames_are_a_packet_each_shows_its_rate_by_its_keyframes():
    frames = [(n / 15, PACKET if n % 30 else 6 * PACKET) for n in range(15 * 6)]  # a keyframe every 2 s
    log = judged(through_bottleneck(frames, kbps=400))
    assert log.rate_bps == pytest.approx(400_000, rel=0.05)
    assert not log.overrun


def test_a_repeated_feedback_message_counts_its_packets_once_and_a_storm_is_refused_beyond_a_rate():
    told: list[int] = []
    log = PacketLog(lambda: told.append(1))
    for _ in range(40):
        log.number(PACKET)
    message = feedback(0, 40, 0, [0b0_01_0000000000000 | 40], bytes([1] * 40))
    for _ in range(10 * MAX_FEEDBACK_RATE):
        log.feedback(message)
    assert told == [1], "its packets were taken once"
    assert log.refused == 9 * MAX_FEEDBACK_RATE and log.malformed == 0
