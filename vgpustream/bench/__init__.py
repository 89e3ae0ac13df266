"""`vgpustream bench ...`: measurements that print numbers (JSON with --json)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from vgpustream.bench import (
    abuse,
    capacity,
    capped,
    cluster,
    fanout,
    idle,
    latency,
    pipeline,
    qemu,
    quality,
    record,
    report,
    soak,
    sound,
    weaknet,
    x264,
)
from vgpustream.media.encoder import EncoderSettings
from vgpustream.media.sound import DEFAULT_BITRATE as DEFAULT_SOUND_BITRATE
from vgpustream.sources import synthetic


def _counts(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError("viewer counts look like 1,4,16") from None
    if not counts or min(counts) < 1 or max(counts) > 64:
        raise argparse.ArgumentTypeError("viewer counts must be within 1..64")
    return counts


def _transports(text: str) -> tuple[str, ...]:
    transports = tuple(part.strip() for part in text.split(","))
    if not transports or any(t not in ("webrtc", "websocket") for t in transports):
        raise argparse.ArgumentTypeError("transports look like webrtc,websocket")
    return transports


def _kinds(text: str) -> list[str]:
    kinds = text.split(",")
    if not kinds or not set(kinds) <= {"moving", "still"}:
        raise argparse.ArgumentTypeError("pictures are moving, still or moving,still")
    return kinds


def _sizes(text: str) -> list[tuple[int, int]]:
    try:
        sizes = [tuple(int(n) for n in part.split("x", 1)) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError("resolutions look like 1280x720,1920x1080") from None
    if not all(len(s) == 2 and min(s) >= 64 and max(s) <= 8192 and not s[0] % 2 and not s[1] % 2 for s in sizes):
        raise argparse.ArgumentTypeError("each resolution must be even, within 64..8192")
    return [(w, h) for w, h in sizes]


def _pattern_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--pattern",
        choices=synthetic.PATTERNS,
        default="text",
        help="the synthetic picture: every pixel changing (text, the default) or a desktop",
    )


def add_bench_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "bench",
        help="measure vgpustream: the encode pipeline, x264 settings, fan-out, idle sessions, quality, capacity, "
        "latency, recording, sound, QEMU, a weak network, hostile input, a soak, or the headline ones as one report",
    )
    kinds = parser.add_subparsers(dest="bench", required=True)
    p = kinds.add_parser("pipeline", help="time per frame against the naive PyAV path, and per stage")
    p.add_argument("--source", help="source URL (default: synthetic at --resolution, changing every frame)")
    p.add_argument("--resolution", default="1280x720", help="size of the synthetic source (default %(default)s)")
    _pattern_argument(p)
    p.add_argument("--frames", type=int, default=300, help="frames to measure of each kind (default %(default)s)")
    p.add_argument("--bitrate", type=int, default=4_000_000, help="H.264 bitrate (default %(default)s)")
    p.add_argument("--timeout", type=float, default=120.0, help="give up after this many seconds")
    p.add_argument("--json", action="store_true", help="print JSON")
    p = kinds.add_parser("x264", help="x264 settings on screen content: CPU per frame against luma PSNR")
    p.add_argument("--resolution", type=_sizes, default=[(1920, 1080)], help="one size (default 1920x1080)")
    _pattern_argument(p)
    p.add_argument("--frames", type=int, default=140, help="frames encoded per variant (default %(default)s)")
    p.add_argument("--rounds", type=int, default=5, help="rounds of every variant in turn (default %(default)s)")
    p.add_argument("--bitrate", type=int, default=EncoderSettings().bitrate, help="H.264 bitrate (default %(default)s)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p = kinds.add_parser("fanout", help="server CPU and viewer frame rates for several viewer counts")
    p.add_argument("--viewers", type=_counts, default=[1, 4, 16], help="viewer counts (default 1,4,16)")
    p.add_argument("--seconds", type=float, default=10.0, help="measuring window per count (default %(default)s)")
    p.add_argument("--resolution", default="1280x720", help="synthetic source size (default %(default)s)")
    p.add_argument("--fps", type=int, default=30, help="frame rate (default %(default)s)")
    p.add_argument("--bitrate", type=int, default=4_000_000, help="H.264 bitrate (default %(default)s)")
    p.add_argument(
        "--transports",
        "--transport",
        type=_transports,
        default=("webrtc",),
        help="webrtc, websocket or both, side by side (default webrtc)",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p = kinds.add_parser("idle", help="CPU per unwatched session, and WHEP POST to first frame for its first viewer")
    p.add_argument("--kinds", type=_kinds, default=["moving", "still"], help="pictures (default moving,still)")
    p.add_argument("--sessions", type=int, default=100, help="unwatched sessions per server (default %(default)s)")
    p.add_argument("--seconds", type=float, default=10.0, help="CPU measuring window (default %(default)s)")
    p.add_argument("--runs", type=int, default=5, help="first viewers timed per kind (default %(default)s)")
    p.add_argument("--resolution", default="1280x720", help="synthetic source size (default %(default)s)")
    p.add_argument("--fps", type=int, default=30, help="frame rate (default %(default)s)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p = kinds.add_parser("quality", help="PSNR of what viewers decode, moving and once the picture stops")
    p.add_argument("--resolutions", type=_sizes, default=[(1280, 720), (1920, 1080)], help="default 1280x720,1920x1080")
    p.add_argument("--bitrate", type=int, default=EncoderSettings().bitrate, help="H.264 bitrate (default %(default)s)")
    p.add_argument("--moving", type=float, default=3.0, help="seconds of moving picture (default %(default)s)")
    p.add_argument("--still", type=float, default=2.0, help="seconds of still picture after it (default %(default)s)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p = kinds.add_parser("capacity", help="server CPU and viewer frame rates as sessions are added")
    p.add_argument("--sessions", type=_counts, default=[1, 2, 4, 8], help="session counts (default 1,2,4,8)")
    p.add_argument("--viewers", type=int, default=1, choices=range(1, 17), help="viewers per session (default 1)")
    p.add_argument("--seconds", type=float, default=10.0, help="measuring window per count (default %(default)s)")
    p.add_argument("--resolution", default="1280x720", help="synthetic source size (default %(default)s)")
    p.add_argument("--still", action="store_true", help="a still picture instead of a moving one")
    _pattern_argument(p)
    p.add_argument("--bitrate", type=int, default=EncoderSettings().bitrate, help="H.264 bitrate (default %(default)s)")
    p.add_argument("--min-fps", type=float, default=28.0, help="a count is held when every viewer gets this")
    p.add_argument("--json", action="store_true", help="print JSON")
    p = kinds.add_parser("latency", help="glass-to-glass delay and page load to first frame, in Chromium")
    p.add_argument("--resolutions", type=_sizes, default=[(1280, 720), (1920, 1080)], help="default 1280x720,1920x1080")
    p.add_argument("--frames", type=int, default=900, help="stamped frames to measure (default %(default)s)")
    p.add_argument("--bitrate", type=int, default=EncoderSettings().bitrate, help="H.264 bitrate (default %(default)s)")
    p.add_argument("--chromium", default="/usr/bin/chromium", help="Chromium binary (default %(default)s)")
    p.add_argument("--loads", type=int, default=10, help="page loads timed to their first frame (default %(default)s)")
    p.add_argument("--joins", type=int, default=10, help="pages joining the watched session (default %(default)s)")
    p.add_argument(
        "--transports", "--transport", type=_transports, default=("webrtc",), help="webrtc, websocket or both"
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p = kinds.add_parser("report", help="run latency, fanout, capacity and quality; write one HTML page of plots")
    p.add_argument("--output", type=Path, default=Path("vgpustream-report.html"), help="default %(default)s")
    p.add_argument("--quick", action="store_true", help="each bench briefly (a smoke run)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p = kinds.add_parser("abuse", help="hostile input on every route: statuses, 5xx (must be 0), resources kept")
    p.add_argument("--examples", type=int, default=200, help="generated cases of each kind (default %(default)s)")
    p.add_argument("--seed", type=int, default=12, help="seed of the generated cases (default %(default)s)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p = kinds.add_parser("record", help="server CPU with and without a recording, and what the recording writes")
    p.add_argument("--seconds", type=float, default=10.0, help="measuring window per run (default %(default)s)")
    p.add_argument("--resolution", default="1280x720", help="synthetic source size (default %(default)s)")
    p.add_argument("--fps", type=int, default=30, help="frame rate (default %(default)s)")
    p.add_argument("--bitrate", type=int, default=4_000_000, help="H.264 bitrate (default %(default)s)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p = kinds.add_parser("soak", help="churn for N minutes: resources over time (must hold flat), steady viewers' fps")
    p.add_argument("--minutes", type=float, default=60.0, help="length of the churn (default %(default)s)")
    p.add_argument("--seed", type=int, default=7, help="seed of the random churn (default %(default)s)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p = kinds.add_parser("weaknet", help="one viewer on a lossy, slow link: its frames, and what the others lose")
    p.add_argument("--viewers", type=int, default=4, choices=range(2, 17), help="viewers (default %(default)s)")
    p.add_argument("--loss", type=float, default=0.02, help="packet loss of the weak link, each way (default 0.02)")
    p.add_argument("--rtt-ms", type=float, default=100.0, help="its round-trip time (default %(default)s)")
    p.add_argument("--seconds", type=float, help="each phase, clean and impaired (default 20; capped: 60)")
    p.add_argument("--resolution", help="synthetic source size (default 640x360; capped: 1280x720)")
    p.add_argument("--bitrate", type=int, help="H.264 bitrate (default 1000000; capped: 4000000)")
    p.add_argument(
        "--cap-kbit",
        type=float,
        help="instead: two Chromium consoles, one on a link of this many kbit/s: its rung, frame rate and "
        "delay, the other's against a run alone",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p = kinds.add_parser("sound", help="CPU of one session's sound path (to float, resample, Opus) per second")
    p.add_argument("--seconds", type=float, default=30.0, help="seconds of sound to encode (default %(default)s)")
    p.add_argument("--bitrate", type=int, default=DEFAULT_SOUND_BITRATE, help="Opus bitrate (default %(default)s)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p = kinds.add_parser("cluster", help="the gateway in front of hosts: list latency, CPU per relayed WHEP offer")
    p.add_argument("--hosts", type=int, default=3, help="`vgpustream serve` processes (default %(default)s)")
    p.add_argument("--sessions-per-host", type=int, default=20, help="sessions on each (default %(default)s)")
    p.add_argument("--lists", type=int, default=200, help="lists timed, one after another (default %(default)s)")
    p.add_argument("--offers", type=int, default=100, help="WHEP offers relayed (default %(default)s)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p = kinds.add_parser("qemu", help="QEMU start to first frame, and key press to changed frame, in a viewer")
    p.add_argument("--runs", type=int, default=5, help="measured runs, after one warm-up (default %(default)s)")
    p.add_argument("--viewer", choices=("aiortc", "chromium"), default="aiortc", help="viewer (default %(default)s)")
    p.add_argument("--chromium", default="/usr/bin/chromium", help="Chromium binary (default %(default)s)")
    p.add_argument("--json", action="store_true", help="print JSON")


def run_bench(args: argparse.Namespace) -> int:
    if args.bench == "pipeline":
        # a synthetic source whose picture changes faster than the pipeline runs: every step captures
        source = args.source or f"synthetic:{args.resolution}@{synthetic.MAX_FPS}?pattern={args.pattern}"
        result = pipeline.run(source, args.frames, EncoderSettings(bitrate=args.bitrate), args.timeout)
        print(json.dumps(result) if args.json else _pipeline_table(result))
    elif args.bench == "x264":
        settings = EncoderSettings(bitrate=args.bitrate)
        result = x264.run(args.resolution[0], args.pattern, args.frames, args.rounds, settings)
        print(json.dumps(result) if args.json else _x264_table(result))
    elif args.bench == "fanout":
        result = fanout.run(
            args.viewers, args.seconds, args.resolution, args.fps, args.bitrate, transports=args.transports
        )
        print(json.dumps(result) if args.json else _fanout_table(result))
    elif args.bench == "capacity":
        result = capacity.run(
            args.sessions,
            args.viewers,
            args.seconds,
            resolution=args.resolution,
            pattern=args.pattern,
            still=args.still,
            bitrate=args.bitrate,
            min_fps=args.min_fps,
        )
        print(json.dumps(result) if args.json else _capacity_table(result))
    elif args.bench == "latency":
        sizes = [f"{width}x{height}" for width, height in args.resolutions]
        result = latency.run(
            sizes,
            args.frames,
            args.bitrate,
            args.chromium,
            loads=args.loads,
            joins=args.joins,
            transports=args.transports,
        )
        print(json.dumps(result) if args.json else _latency_table(result))
    elif args.bench == "report":
        result = report.write(args.output, args.quick)
        print(json.dumps(result) if args.json else f"wrote {result['output']}")
    elif args.bench == "idle":
        result = idle.run(
            args.kinds,
            sessions=args.sessions,
            seconds=args.seconds,
            runs=args.runs,
            resolution=args.resolution,
            fps=args.fps,
        )
        print(json.dumps(result) if args.json else _idle_table(result))
    elif args.bench == "quality":
        result = quality.run(args.resolutions, EncoderSettings(bitrate=args.bitrate), args.moving, args.still)
        print(json.dumps(result) if args.json else _quality_table(result))
    elif args.bench == "abuse":
        result = abuse.run(args.examples, args.seed)
        print(json.dumps(result) if args.json else abuse.table(result))
    elif args.bench == "weaknet" and args.cap_kbit is not None:
        result = capped.run(
            args.cap_kbit,
            seconds=args.seconds or 60.0,
            resolution=args.resolution or "1280x720",
            bitrate=args.bitrate or 4_000_000,
        )
        print(json.dumps(result) if args.json else capped.table(result))
    elif args.bench == "weaknet":
        result = weaknet.run(
            args.viewers,
            args.loss,
            args.rtt_ms,
            seconds=args.seconds or 20.0,
            resolution=args.resolution or "640x360",
            bitrate=args.bitrate or 1_000_000,
        )
        print(json.dumps(result) if args.json else weaknet.table(result))
    elif args.bench == "record":
        result = record.run(args.seconds, args.resolution, args.fps, args.bitrate)
        print(json.dumps(result) if args.json else record.table(result))
    elif args.bench == "soak":
        result = soak.run(args.minutes, args.seed)
        print(json.dumps(result) if args.json else soak.table(result))
    elif args.bench == "sound":
        result = sound.run(args.seconds, args.bitrate)
        print(json.dumps(result) if args.json else sound.table(result))
    elif args.bench == "cluster":
        result = cluster.run(
            hosts=args.hosts, sessions_per_host=args.sessions_per_host, lists=args.lists, offers=args.offers
        )
        print(json.dumps(result) if args.json else cluster.table(result))
    else:
        result = qemu.run(args.runs, args.viewer, args.chromium)
        print(json.dumps(result) if args.json else _qemu_table(result))
    return 0


def _pipeline_table(result: dict[str, Any]) -> str:
    t = result["throughput"]
    paced_by_source = [f"(the source set the pace: {t['source_bound_frames']} frames repeated)"]
    lines = [
        f"{result['resolution']} from {result['source']}: {result['frames']} frames of each kind in "
        f"{result['rounds']} rounds (after {result['warm_up_frames']} warm-up each), loop and naive path in turn",
        "per frame, steady state   wall ms   CPU ms",
        f"capture loop (overlapped) {t['pipeline_ms_per_frame']:>7.2f}  {t['pipeline_cpu_ms_per_frame']:>7.2f}",
        f"naive PyAV path           {t['naive_ms_per_frame']:>7.2f}  {t['naive_cpu_ms_per_frame']:>7.2f}",
        f"loop / naive              {result['step_to_naive']:>7.3f}  {result['cpu_to_naive']:>7.3f}",
        *(paced_by_source if t["source_bound_frames"] else []),
        "stages, one call after the other   p50      p95",
    ]
    lines += [f"{stage:<8} {v['p50']:>7.2f}  {v['p95']:>7.2f}" for stage, v in result["stages"].items()]
    naive, ratio = result["naive_total"], result["total_to_naive_p50"]
    lines.append(f"{'naive':<8} {naive['p50']:>7.2f}  {naive['p95']:>7.2f}   (total/naive p50: {ratio})")
    return "\n".join(lines)


def _fanout_table(result: dict[str, Any]) -> str:
    lines = [
        f"{result['resolution']}@{result['fps']}, {result['seconds']:.0f} s per run",
        "transport  viewers  server cpu/wall  fps/viewer min  mean  encoded fps  decoded fps  server cpu ms/frame",
    ]
    lines += [
        f"{r['transport']:<9}  {r['viewers']:>7}  {r['cpu_per_wall']:>15.3f}  {r['fps_per_viewer_min']:>14.1f}"
        f"  {r['fps_per_viewer_mean']:>4.1f}  {r['encoded_fps']:>11.1f}  {r['decoded_fps']:>11.1f}"
        f"  {r['server_cpu_ms_per_frame']:>19.2f}"
        for r in result["runs"]
    ]
    for transport, cost in result["per_viewer_cpu_ms_per_frame"].items():
        if cost is not None:
            lines.append(f"each {transport} viewer adds {cost:.3f} ms of event-loop CPU per frame")
    return "\n".join(lines)


def _x264_table(result: dict[str, Any]) -> str:
    title = f"{result['pattern']} at {result['resolution']}, {result['frames']} frames x {result['rounds']} rounds"
    header = "variant                   cpu ms/frame  to session (range)   kbit/s  psnr p50    min"
    return "\n".join([title, header, *map(_x264_row, result["variants"])])


def _x264_row(row: dict[str, Any]) -> str:
    low, high = row["cpu_to_session_range"]
    ratio = f"{row['cpu_to_session_p50']:.3f} ({low:.2f}-{high:.2f})"
    return (
        f"{row['variant']:<24}  {row['cpu_ms_per_frame_p50']:>12.2f}  {ratio:>18}  {row['kbit_per_s']:>6}"
        f"  {row['psnr_db_p50']:>8.2f}  {row['psnr_db_min']:>5.2f}"
    )


def _capacity_table(result: dict[str, Any]) -> str:
    lines = [
        f"{result['source']}, {result['viewers_per_session']} viewer(s) each, {result['seconds']:.0f} s per run; "
        f"sessions held at >= {result['min_fps']:g} fps: {result['sessions_held']}",
        "sessions  server cpu/wall  cpu/session  fps/viewer min  mean  encoded fps/session  server cpu ms/frame"
        "  changed/frame  kbit/s/session",
    ]
    lines += [
        f"{r['sessions']:>8}  {r['cpu_per_wall']:>15.3f}  {r['cpu_per_session']:>11.4f}"
        f"  {r['fps_per_viewer_min']:>14.1f}  {r['fps_per_viewer_mean']:>4.1f}"
        f"  {r['encoded_fps_per_session']:>19.1f}  {r['server_cpu_ms_per_frame']:>19.2f}"
        f"  {r['changed_area_per_frame']:>13.1%}  {r['kbit_per_s_per_session']:>14.0f}"
        for r in result["runs"]
    ]
    return "\n".join(lines)


def _latency_table(result: dict[str, Any]) -> str:
    lines = [f"Chromium {result['browser']['chromium']}, WebRTC settings: {result['browser']['webrtc']}",
             "glass-to-glass in Chromium, ms (handed to the page / expected on screen / the console's own)",
             "resolution  frames  p50                p95                p99"
             "                WHEP POST -> first frame"]  # fmt: skip
    for run in result["runs"]:
        figures = run["glass_to_glass_ms"]
        handed, shown, console = figures["handed_to_page"], figures["expected_on_screen"], figures["console_reported"]
        cells = "  ".join(f"{handed[q]:>5}/{shown[q]:>5}/{console.get(q, '-'):<5}" for q in ("p50", "p95", "p99"))
        name = f"{run['resolution']} {run['transport']}"
        lines.append(f"{name:>20}  {run['frames']:>6}  {cells}  {run['whep_post_to_first_frame_ms'] or '-'} ms")
    lines.append(f"page load -> first frame presented, ms, over {result['loads']} loads (p50 [min..max]); WHEP POST")
    for run in result["runs"]:
        first, post = run["page_load_to_first_frame_ms"], run["whep_post_answered_ms"]
        answered = f"   POST {post['p50']} [{post['min']}..{post['max']}]" if post else ""
        name = f"{run['resolution']} {run['transport']}"
        lines.append(f"{name:>20}  {first['p50']:>6} [{first['min']}..{first['max']}]{answered}")
    lines.append(
        "the join phase: the age of each frame shown in a joiner's first 2 s, ms (p50 / p95 / max; max per join)"
    )
    for run in result["runs"]:
        join = run["join_phase_ms"]
        name = f"{run['resolution']} {run['transport']}"
        figures = f"{join.get('p50', '-')} / {join.get('p95', '-')} / {join['max']}"
        lines.append(f"{name:>20}  {figures}  {join['max_per_join']}")
    return "\n".join(lines)


def _idle_table(result: dict[str, Any]) -> str:
    lines = [
        f"unwatched synthetic:{result['resolution']}@{result['fps']} sessions, {result['seconds']:.0f} s window",
        "picture  sessions  server cores  cores/session  captured fps  encoded fps  first frame s (median, all)",
    ]
    lines += [
        f"{r['kind']:<7}  {r['sessions']:>8}  {r['server_cores']:>12.3f}  {r['cores_per_session']:>13.4f}"
        f"  {r['captured_fps_per_session']:>12.1f}  {r['encoded_fps_per_session']:>11.1f}"
        f"  {r['first_frame_s']['median']} {r['first_frame_s']['all']}"
        for r in result["runs"]
    ]
    return "\n".join(lines)


def _quality_table(result: dict[str, Any]) -> str:
    lines = [
        f"luma PSNR (dB) of decoded frames; sharp >= {result['sharp_db']:.0f} dB",
        "resolution  moving p50/min  kbit/s  still first -> final  s to sharp  joiner (packets)",
    ]
    for run in result["runs"]:
        moving, still = run["moving"], run["still"]
        lines.append(
            f"{run['resolution']:>10}  {moving['psnr_db_p50']!s:>6}/{moving['psnr_db_min']!s:<6}  "
            f"{moving['kbit_per_s']:>6}  {still['psnr_db_first']!s:>8} -> {still['psnr_db_final']!s:<7}  "
            f"{still['seconds_to_sharp']!s:>10}  {still['joiner_psnr_db']!s} ({still['joiner_replayed_packets']})"
        )
    return "\n".join(lines)


def _qemu_table(result: dict[str, Any]) -> str:
    first, key = result["qemu_start_to_first_frame_s"], result["key_to_changed_frame_ms"]
    return "\n".join(
        [
            f"QEMU D-Bus display, {result['viewer']} viewer, {result['runs']} runs (median, then each run)",
            f"QEMU start -> first frame   {first['median']:.3f} s   {first['all']}",
            f"key press -> changed frame  {key['median']:.1f} ms   {key['all']}",
        ]
    )
