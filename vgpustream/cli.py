"""The `vgpustream` command: serve, planes, snapshot, bench."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import re
import sys
from collections.abc import Sequence

from aiohttp import web

from vgpustream.api.app import create_app
from vgpustream.bench import add_bench_parser, run_bench
from vgpustream.encoder import EncoderSettings
from vgpustream.errors import VgpuStreamError
from vgpustream.settings import DEFAULT_SOURCE, IceServer, Settings
from vgpustream.snapshot import planes_json, write_snapshot

_RESOLUTION = re.compile(r"(\d{2,5})x(\d{2,5})")


def resolution(text: str) -> tuple[int, int]:
    match = _RESOLUTION.fullmatch(text)
    if not match:
        raise argparse.ArgumentTypeError("resolution must look like 1920x1080")
    return int(match[1]), int(match[2])


def _add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the server (session 'default' on --source)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s)")
    p.add_argument("--port", type=int, default=8080, help="port to listen on (default %(default)s)")
    p.add_argument("--source", help=f"source URL of session 'default' (default {DEFAULT_SOURCE})")
    p.add_argument(
        "--resolution", type=resolution, help="size of the default synthetic source, e.g. 1920x1080 (default 1280x720)"
    )
    p.add_argument("--fps", type=int, default=30, help="frame rate cap of capture and encoding (default %(default)s)")
    p.add_argument("--bitrate", type=int, default=4_000_000, help="H.264 bitrate in bit/s (default %(default)s)")
    p.add_argument(
        "--keyframe-interval", type=float, default=2.0, help="seconds between periodic keyframes (default %(default)s)"
    )
    p.add_argument("--max-viewers", type=int, default=16, help="viewers per session (default %(default)s)")
    p.add_argument("--max-sessions", type=int, default=16, help="sessions per server (default %(default)s)")
    p.add_argument(
        "--ice-server",
        action="append",
        default=[],
        metavar="URL",
        help="STUN/TURN server for viewers and the server, e.g. stun:stun.example.net:3478 (repeatable)",
    )
    p.add_argument("--turn-username", help="username for the turn:/turns: servers")
    p.add_argument("--turn-credential", help="credential for the turn:/turns: servers")
    p.add_argument(
        "--host-address",
        action="append",
        default=[],
        metavar="IP",
        help="offer only these addresses as ICE host candidates (repeatable; default: every non-loopback address)",
    )
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])


def settings_from_args(args: argparse.Namespace) -> Settings:
    if args.resolution and args.source:
        raise VgpuStreamError("--resolution sets the synthetic default source; put the size in --source instead")
    width, height = args.resolution or (1280, 720)
    source = args.source or f"synthetic:{width}x{height}@{args.fps}"
    ice = tuple(
        IceServer(url, args.turn_username, args.turn_credential) if url.startswith("turn") else IceServer(url)
        for url in args.ice_server
    )
    return Settings(
        host=args.host,
        port=args.port,
        source=source,
        encoder=EncoderSettings(bitrate=args.bitrate, fps=args.fps, keyframe_interval=args.keyframe_interval),
        max_sessions=args.max_sessions,
        max_viewers=args.max_viewers,
        ice_servers=ice,
        host_addresses=tuple(args.host_address),
    )


def _serve(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = settings_from_args(args)
    print(f"vgpustream: console at http://{settings.host}:{settings.port}/?session=default", flush=True)
    web.run_app(create_app(settings), host=settings.host, port=settings.port, print=None)
    return 0


def _planes(args: argparse.Namespace) -> int:
    print(json.dumps(asyncio.run(planes_json(args.source)), indent=2))
    return 0


def _snapshot(args: argparse.Namespace) -> int:
    asyncio.run(write_snapshot(args.source, args.output))
    return 0


def _bench(args: argparse.Namespace) -> int:
    return run_bench(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vgpustream", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_serve(sub)
    p = sub.add_parser("planes", help="print a source's plane metadata as JSON")
    p.add_argument("--source", default=DEFAULT_SOURCE)
    p = sub.add_parser("snapshot", help="save one frame of a source as PNG")
    p.add_argument("--source", default=DEFAULT_SOURCE)
    p.add_argument("-o", "--output", required=True, help="PNG file to write")
    add_bench_parser(sub)
    return parser


_COMMANDS = {"serve": _serve, "planes": _planes, "snapshot": _snapshot, "bench": _bench}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _COMMANDS[args.command](args)
    except VgpuStreamError as exc:
        print(f"vgpustream: {exc.message}", file=sys.stderr)
        return 2
