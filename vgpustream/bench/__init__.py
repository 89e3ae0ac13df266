"""`vgpustream bench ...`: measurements that print numbers (JSON with --json)."""

from __future__ import annotations

import argparse


def add_bench_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="measure the pipeline or the fan-out")
    p.add_subparsers(dest="bench", required=True)


def run_bench(args: argparse.Namespace) -> int:
    raise NotImplementedError
