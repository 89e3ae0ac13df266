"""The `vgpustream` command: serve, gateway, planes, snapshot, bench."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import ssl
import sys
from collections.abc import Sequence

from aiohttp import web

from vgpustream import __version__
from vgpustream.api.app import AccessLogger, create_app
from vgpustream.api.state import AUDIT, AUTHORITY, SETTINGS
from vgpustream.api.tokens import links
from vgpustream.bench import add_bench_parser, run_bench
from vgpustream.capture.oneshot import planes_json, write_snapshot
from vgpustream.control.auth import operator_tokens
from vgpustream.control.store import DatabaseUnusable
from vgpustream.errors import VgpuStreamError
from vgpustream.gateway.app import create_gateway
from vgpustream.gateway.settings import GatewaySettings
from vgpustream.registry import DEFAULT_SESSION
from vgpustream.settings import DEFAULT_SOURCE, add_arguments, load_settings

SOURCE_HELP = (
    "source URL: synthetic:WxH@FPS, vfio:<mdev-uuid>, vfio-cdev:/dev/vfio/devices/N, qemu-dbus:<bus address>, "
    "... (see the README's sources; default %(default)s)"
)


def _add_serve(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("serve", help="run the server (session 'default' on --source)")
    add_arguments(parser)


async def _startup_link(app: web.Application) -> None:
    """Print a ready console link with a control token for session 'default', as Jupyter does."""
    settings = app[SETTINGS]
    scheme = "https" if settings.tls_cert else "http"
    base = (settings.public_url or f"{scheme}://{settings.host}:{settings.port}").rstrip("/")
    if settings.insecure_no_auth:
        print(f"vgpustream: WARNING: no authentication (--insecure-no-auth); console at {base}/?session=default")
        return
    if settings.no_console_link:
        return
    record, secret = app[AUTHORITY].issue(
        DEFAULT_SESSION, role="control", ttl_seconds=settings.max_token_ttl, single_use=False
    )
    app[AUDIT].token_created(record)
    print(f"vgpustream: console for session 'default' (valid {settings.max_token_ttl // 3600} h):", flush=True)
    print(f"    {links(base, DEFAULT_SESSION, secret)['console_url']}", flush=True)


def _serve(args: argparse.Namespace) -> int:
    settings = load_settings(args)
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not settings.insecure_no_auth:
        _, generated = operator_tokens(settings)
        if generated is not None:
            print(f"vgpustream: operator token for /api/v1 is in {generated}", flush=True)
    ssl_context = None
    if settings.tls_cert and settings.tls_key:
        ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ssl_context.load_cert_chain(settings.tls_cert, settings.tls_key)
    app = create_app(settings)
    app.on_startup.append(_startup_link)
    try:
        web.run_app(
            app,
            host=settings.host,
            port=settings.port,
            ssl_context=ssl_context,
            print=None,
            access_log_class=AccessLogger,
        )
    except DatabaseUnusable as exc:
        print(f"vgpustream: {exc}", file=sys.stderr)
        return 1
    return 0


def _add_gateway(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("gateway", help="run the cluster's gateway in front of the hosts (--node NAME=URL)")
    add_arguments(parser, GatewaySettings)


def _gateway(args: argparse.Namespace) -> int:
    settings = load_settings(args, kind=GatewaySettings)
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_gateway(settings)
    web.run_app(app, host=settings.host, port=settings.port, print=None, access_log_class=AccessLogger)
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
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_serve(sub)
    _add_gateway(sub)
    for name, what in (
        ("planes", "print a source's plane metadata as JSON"),
        ("snapshot", "save one frame of a source as PNG"),
    ):
        p = sub.add_parser(name, help=what)
        p.add_argument("--source", default=DEFAULT_SOURCE, help=SOURCE_HELP)
    p.add_argument("-o", "--output", required=True, help="PNG file to write")
    add_bench_parser(sub)
    return parser


_COMMANDS = {"serve": _serve, "gateway": _gateway, "planes": _planes, "snapshot": _snapshot, "bench": _bench}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _COMMANDS[args.command](args)
    except VgpuStreamError as exc:
        print(f"vgpustream: {exc.message}", file=sys.stderr)
        return 2
