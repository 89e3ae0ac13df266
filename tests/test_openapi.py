"""The OpenAPI document is the truth: schemathesis runs every operation against a live server."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import jsonschema
import pytest
from aiohttp.test_utils import make_mocked_request

from tests.conftest import OPERATOR_TOKEN
from tests.conftest import test_settings as host_settings
from tests.gateway_cluster import GATEWAY_TOKEN
from tests.served import ROOT, serve
from vgpustream.api.app import create_app
from vgpustream.api.openapi import UNDOCUMENTED, document
from vgpustream.gateway.openapi import document as gateway_document
from vgpustream.testing.server import gateway as gateway_process

CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
    "ignored_auth",
]


def schemathesis(url: str, token: str) -> str:
    """The summary of schemathesis run against the document served at `url` with operator `token`; the run
    must pass."""
    if shutil.which("schemathesis") is None:
        pytest.skip("schemathesis is not installed (pip install -e '.[test]')")
    run = subprocess.run(
        [
            "schemathesis",
            "run",
            f"{url}/api/v1/openapi.json",
            "--checks",
            ",".join(CHECKS),
            "-H",
            f"Authorization: Bearer {token}",
            "--max-examples",
            "25",
            "--seed",
            "2026",
            "--no-color",
        ],
        check=False,
        env={**os.environ, "SCHEMATHESIS_HOOKS": "tests.schemathesis_hooks", "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    summary = run.stdout[-4000:]
    assert run.returncode == 0, summary
    return summary


def operations_of(doc: dict) -> set[tuple[str, str]]:
    """The (method, path) of every operation of `doc`."""
    return {(method.upper(), path) for path, item in doc["paths"].items() for method in set(item) - {"parameters"}}


def test_the_document_names_every_route_of_the_app_and_no_other(tmp_path):
    """Each route is declared once, with its handler (vgpustream.api.routes): the app routes exactly what the
    document describes, besides the few routes that are not operations (openapi.UNDOCUMENTED, each with why)."""
    app = create_app(host_settings(tmp_path / "state"))
    routes = {(route.method, route.resource.canonical) for route in app.router.routes() if route.resource is not None}
    registered = {(method, path) for method, path in routes if not (method == "HEAD" and ("GET", path) in routes)}
    doc = document()
    documented = operations_of(doc)
    assert not (missing := registered - documented - set(UNDOCUMENTED)), f"routed, not in the document: {missing}"
    assert not (made_up := documented - registered), f"in the document, not routed: {made_up}"
    assert set(UNDOCUMENTED) <= registered and not set(UNDOCUMENTED) & documented
    tags = {tag["name"] for tag in doc["tags"]}
    for method, path in documented:
        assert set(doc["paths"][path][method.lower()]["tags"]) <= tags, f"{method} {path}: a tag the document has"


def test_schemathesis_finds_no_5xx_and_no_schema_violation(tmp_path):
    with serve(tmp_path / "state", "--max-sessions", "4", "--source", "synthetic:320x240@10") as served:
        summary = schemathesis(served.url, OPERATOR_TOKEN)
    assert "Selected: 29/29" in summary and "Tested: 29" in summary, summary


def test_schemathesis_finds_no_5xx_and_no_schema_violation_through_the_gateway(tmp_path):
    hosts = [("--max-sessions", "4", "--source", "synthetic:320x240@10", "--node-name", f"gpu-host-{n}") for n in "12"]
    with serve(tmp_path / "h1", *hosts[0]) as first, serve(tmp_path / "h2", *hosts[1]) as second:
        environment = {
            "VGPUSTREAM_OPERATOR_TOKEN": GATEWAY_TOKEN,
            "VGPUSTREAM_HOST_TOKEN": OPERATOR_TOKEN,
            "VGPUSTREAM_NODE": f"gpu-host-1={first.url},gpu-host-2={second.url}",
            "PYTHONPATH": str(ROOT),
        }
        with gateway_process(tmp_path, env=environment) as gateway:
            summary = schemathesis(gateway.url, GATEWAY_TOKEN)
    operations = len(operations_of(gateway_document()))
    assert f"Selected: {operations}/{operations}" in summary and f"Tested: {operations}" in summary, summary


@pytest.mark.parametrize("served_by", ["host", "gateway"])
def test_redocly_recommended_rules_find_nothing(tmp_path, served_by):
    redocly = ROOT / "tests" / "browser" / "node_modules" / ".bin" / "redocly"
    if not redocly.exists():
        pytest.skip("Redocly's CLI is not installed (npm ci --prefix tests/browser)")
    path = tmp_path / "openapi.json"
    path.write_text(json.dumps({"host": document, "gateway": gateway_document}[served_by](), indent=1))
    run = subprocess.run(
        [str(redocly), "lint", str(path), "--format=stylish", "--extends=recommended"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    report = run.stdout + run.stderr
    assert run.returncode == 0 and "Your API description is valid" in report, report[-3000:]
    assert " warning " not in report and "You have" not in report, report[-3000:]


async def test_a_source_that_cannot_be_opened_is_the_documented_503(make_server, http):
    """Creating a session on a VM whose D-Bus socket is missing answers 503 source_unavailable, as the OpenAPI
    description and the README's list of errors say."""
    server = await make_server(source="synthetic:320x240@10")
    body = {"id": "gone", "source": "qemu-dbus:unix:path=/nonexistent/vm.sock"}
    async with http.post(server.make_url("/api/v1/sessions"), json=body) as response:
        assert response.status == 503
        assert (await response.json())["error"]["code"] == "source_unavailable"
    async with http.get(server.make_url("/api/v1/sessions/gone")) as response:
        assert response.status == 404, "nothing was created"
    answers = document()["paths"]["/api/v1/sessions"]["post"]["responses"]
    assert "source_unavailable" in answers["503"]["description"]
    readme = " ".join((ROOT / "README.md").read_text().split())
    errors = readme[readme.index("Errors are JSON") :][:800]
    assert "`503 source_unavailable`" in errors, errors


def answer_validator(doc: dict, path: str, method: str, status: int) -> jsonschema.Draft202012Validator:
    """A JSON Schema validator of the body `doc` declares for `status` of `method` on `path`."""
    schema = doc["paths"][path][method]["responses"][str(status)]["content"]["application/json"]["schema"]
    return jsonschema.Draft202012Validator({**schema, "components": doc["components"]})


async def test_the_gateway_serves_its_own_document_and_its_answers_are_what_it_says(cluster, control_plane, anonymous):
    gateway = await cluster.gateway(host_timeout=0.5)
    async with anonymous.get(gateway.make_url("/api/v1/openapi.json")) as response:
        assert response.status == 200, "public, as a host's"
        doc = await response.json()
    assert doc == json.loads(json.dumps(gateway_document())) and doc["info"]["title"] == "vgpustream gateway"
    declared = set()
    for path, item in doc["paths"].items():
        for method in set(item) - {"parameters"}:
            declared.add((method.upper(), path))
            request = make_mocked_request(method.upper(), re.sub(r"\{\w+\}", "x", path), app=gateway.app)
            assert (await gateway.app.router.resolve(request)).http_exception is None, f"{method} {path}"
    routes = {
        (route.method, route.resource.canonical)
        for route in gateway.app.router.routes()
        if route.resource is not None and route.method not in ("HEAD", "*") and "{rest" not in route.resource.canonical
    }
    served = {(method, path) for method, path in routes if path.startswith(("/api/", "/whep/"))}
    assert served - {("GET", "/api/v1/openapi.json")} <= declared, "every operation (but the document, as a host's)"
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            if method != "parameters" and path.startswith(("/api/v1/sessions/{id}", "/whep/")):
                assert "node" in {p["name"] for p in operation["parameters"]}, f"{method} {path} takes ?node="
                assert {"409", "502", "503"} <= set(operation["responses"]), f"{method} {path}"
                assert "Retry-After" in operation["responses"]["503"]["headers"], f"{method} {path}"

    async with control_plane.get(gateway.make_url("/api/v1/sessions")) as response:
        assert response.status == 200  # every host's sessions seen
    await cluster.hosts["gpu-host-3"].close()
    async with control_plane.get(gateway.make_url("/api/v1/sessions")) as response:
        listing = await response.json()
    assert {s["state"] for s in listing["sessions"] if s["node"] == "gpu-host-3"} == {"unreachable"}
    answer_validator(doc, "/api/v1/sessions", "get", 200).validate(listing)
    for path, status in (("/api/v1/sessions/default?node=gpu-host-3", 503), ("/api/v1/sessions/default", 409)):
        async with control_plane.get(gateway.make_url(path)) as response:
            assert response.status == status, path
            answer_validator(doc, "/api/v1/sessions/{id}", "get", status).validate(await response.json())
    async with control_plane.get(gateway.make_url("/api/v1/sessions/default?node=gpu-host-1")) as response:
        answer_validator(doc, "/api/v1/sessions/{id}", "get", 200).validate(await response.json())
    body = {"id": "vm-1", "source": "synthetic:320x240@30", "node": "gpu-host-2"}
    assert jsonschema.Draft202012Validator(
        {**doc["paths"]["/api/v1/sessions"]["post"]["requestBody"]["content"]["application/json"]["schema"],
         "components": doc["components"]}
    ).is_valid(body)  # fmt: skip
    async with control_plane.post(gateway.make_url("/api/v1/sessions"), json=body) as response:
        assert response.status == 201
        answer_validator(doc, "/api/v1/sessions", "post", 201).validate(await response.json())


def test_the_readme_s_cluster_picture_and_calls_through_the_gateway_are_the_gateway_s():
    """The README's deployment section shows the cluster and the control plane's calls through the gateway
    (issue #27): each call is an operation of the gateway's document, with parameters it declares."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### A cluster: one endpoint through the gateway") :]
    section = section[: section.index("\n## ")]
    assert "vgpustream gateway" in section and "WebRTC media straight from the session's host" in section
    doc = gateway_document()
    calls = [line for line in section.splitlines() if line.startswith("curl ") and "$GW/" in line]
    assert len(calls) >= 8, calls
    for call in calls:
        target = re.search(r"\$GW(/[^\s\"]+)", call)[1]
        method = call.split("-X ")[1].split()[0].lower() if "-X " in call else "get"
        path, _, query = f"/api/v1{target}".partition("?")
        operations = [
            (template, item[method])
            for template, item in doc["paths"].items()
            if method in item and re.fullmatch(re.sub(r"\{\w+\}", "[^/]+", template), path)
        ]
        assert len(operations) == 1, f"{method} {path}: {[template for template, _ in operations]}"
        (template, operation), *_ = operations
        declared = {
            p["name"] for p in [*doc["paths"][template].get("parameters", []), *operation.get("parameters", [])]
        }
        assert {pair.partition("=")[0] for pair in query.split("&") if pair} <= declared, f"{method} {target}"
