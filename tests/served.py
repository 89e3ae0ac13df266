"""`vgpustream serve` as a real process, for tests of what a process does: restarts, TLS, the CLI."""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from tests.conftest import OPERATOR_TOKEN
from vgpustream.testing import server

ROOT = Path(__file__).resolve().parent.parent


def serve(
    state_dir: Path, *args: str, env: dict[str, str] | None = None, **options: Any
) -> AbstractContextManager[server.Served]:
    """The shared `serve`, with the tests' operator token and this checkout's code (not an installed copy's)."""
    environment = {"VGPUSTREAM_OPERATOR_TOKEN": OPERATOR_TOKEN, "PYTHONPATH": str(ROOT), **(env or {})}
    return server.serve(state_dir, *args, env=environment, **options)
