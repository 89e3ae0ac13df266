"""The console's page and modules, served from memory: types, validators, and every module announced."""

from __future__ import annotations

import re

from vgpustream.api.console import web_root


async def test_the_page_announces_every_module_it_imports(make_server, anonymous):
    server = await make_server()
    async with anonymous.get(server.make_url("/")) as response:
        assert response.status == 200 and response.content_type == "text/html"
        preloaded = set(re.findall(r"</web/([\w.-]+)>; rel=modulepreload", response.headers["Link"]))
    imported = {"app.js"} | {
        name for module in web_root().glob("*.js") for name in re.findall(r'from "\./([\w.-]+)"', module.read_text())
    }
    assert imported <= preloaded, imported - preloaded


async def test_a_module_is_revalidated_with_its_etag_and_an_unknown_one_is_404(make_server, anonymous):
    server = await make_server()
    url = server.make_url("/web/console.js")
    async with anonymous.get(url) as response:
        assert response.status == 200 and response.content_type == "text/javascript"
        assert (await response.read()) == (web_root() / "console.js").read_bytes()
        etag = response.headers["ETag"]
    async with anonymous.get(url, headers={"If-None-Match": etag}) as response:
        assert response.status == 304 and not await response.read()
    async with anonymous.get(server.make_url("/web/style.css")) as response:
        assert response.status == 200 and response.content_type == "text/css" and response.headers["ETag"] != etag
    for missing in ("/web/nothing.js", "/web/../pyproject.toml", "/web/%2e%2e/README.md"):
        async with anonymous.get(server.make_url(missing)) as response:
            assert response.status == 404, missing
