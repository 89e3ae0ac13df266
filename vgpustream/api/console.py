"""The web console's files: `/` is the page, `/web/...` its modules."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

_PACKAGE = Path(__file__).resolve().parent.parent


def web_root() -> Path:
    """web/ inside an installed wheel, else the repository's top-level web/ (editable installs)."""
    for candidate in (_PACKAGE / "web", _PACKAGE.parent / "web"):
        if (candidate / "index.html").is_file():
            return candidate
    raise FileNotFoundError("the web console's files (web/index.html) are missing")


def add_routes(app: web.Application) -> None:
    root = web_root()
    index = root / "index.html"
    # every module at once, with the page: the browser would find them one import level at a time
    preload = ", ".join(f"</web/{module.name}>; rel=modulepreload" for module in sorted(root.glob("*.js")))

    async def page(request: web.Request) -> web.FileResponse:
        return web.FileResponse(index, headers={"Cache-Control": "no-cache", "Link": preload})

    app.router.add_get("/", page)
    app.router.add_static("/web/", root, show_index=False, follow_symlinks=False)
