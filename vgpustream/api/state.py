"""Typed application state shared by the request handlers."""

from __future__ import annotations

from aiohttp import web

from vgpustream.registry import SessionRegistry
from vgpustream.settings import Settings

SETTINGS = web.AppKey("settings", Settings)
REGISTRY = web.AppKey("registry", SessionRegistry)
