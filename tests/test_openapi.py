"""The OpenAPI document is the truth: schemathesis runs every operation against a live server."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.conftest import OPERATOR_TOKEN
from tests.served import ROOT, serve

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
    assert "Selected: 17/17" in summary and "Tested: 17" in summary, summary
