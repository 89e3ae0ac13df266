"""The OpenAPI document is the truth: schemathesis runs every operation against a live server."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from tests.conftest import OPERATOR_TOKEN
from tests.served import ROOT, serve
from vgpustream.api.openapi import document

CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
    "ignored_auth",
]


def test_schemathesis_finds_no_5xx_and_no_schema_violation(tmp_path):
    if shutil.which("schemathesis") is None:
        pytest.skip("schemathesis is not installed (pip install -e '.[test]')")
    with serve(tmp_path / "state", "--max-sessions", "4", "--source", "synthetic:320x240@10") as served:
        run = subprocess.run(
            [
                "schemathesis",
                "run",
                f"{served.url}/api/v1/openapi.json",
                "--checks",
                ",".join(CHECKS),
                "-H",
                f"Authorization: Bearer {OPERATOR_TOKEN}",
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
    assert "Selected: 29/29" in summary and "Tested: 29" in summary, summary


def test_redocly_recommended_rules_find_nothing(tmp_path):
    redocly = ROOT / "tests" / "browser" / "node_modules" / ".bin" / "redocly"
    if not redocly.exists():
        pytest.skip("Redocly's CLI is not installed (npm ci --prefix tests/browser)")
    path = tmp_path / "openapi.json"
    path.write_text(json.dumps(document(), indent=1))
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
