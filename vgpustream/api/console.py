"""The web console's files: `/` is the page, `/web/...` its modules and style sheet.

They are read once at start and served from memory, each with an ETag (a browser revalidates with a
`304`): a page load asks for every module at once (the page announces them, `rel=modulepreload`), and
answering each from a file would cost a thread hop and a file open per module, time a person waits
before the console even starts to connect.
"""

from __future__ import annotations

import hashlib
import mimetypes
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

_PACKAGE = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class _File:
    body: bytes
    content_type: str
    etag: str


def web_root() -> Path:
    """web/ inside an installed wheel, else the repository's top-level web/ (editable installs)."""
    for candidate in (_PACKAGE / "web", _PACKAGE.parent / "web"):
        if (candidate / "index.html").is_file():
            return candidate
    raise FileNotFoundError("the web console's files (web/index.html) are missing")


def _read(path: Path) -> _File:
    body = path.read_bytes()
    content_type = "text/javascript" if path.suffix == ".js" else mimetypes.guess_type(path.name)[0]
    return _File(body, content_type or "application/octet-stream", f'"{hashlib.sha256(body).hexdigest()[:32]}"')


def _answer(request: web.Request, file: _File, headers: dict[str, str]) -> web.Response:
    headers = {"Cache-Control": "no-cache", "ETag": file.etag, **headers}
    if request.headers.get("If-None-Match") == file.etag:
        return web.Response(status=304, headers=headers)
    return web.Response(body=file.body, content_type=file.content_type, charset="utf-8", headers=headers)


def add_routes(app: web.Application) -> None:
    root = web_root()
    index = _read(root / "index.html")
    files = {path.name: _read(path) for path in sorted(root.iterdir()) if path.is_file() and path.name != "index.html"}
    # every module at once, with the page: the browser would find them one import level at a time
    # (not the worklets: an AudioWorklet loads its own module, in its own scope)
    modules = [name for name in files if name.endswith(".js") and not name.endswith(".worklet.js")]
    preload = ", ".join(f"</web/{name}>; rel=modulepreload" for name in modules)

    async def page(request: web.Request) -> web.Response:
        return _answer(request, index, {"Link": preload})

    async def module(request: web.Request) -> web.Response:
        file = files.get(request.match_info["name"])
        if file is None:
            raise web.HTTPNotFound()
        return _answer(request, file, {})

    app.router.add_get("/", page)
    app.router.add_get("/web/{name}", module)
