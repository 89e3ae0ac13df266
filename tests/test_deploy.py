"""Deployment files: Kubernetes manifests against the schemas shipped in kubernetes-validate (offline),
the systemd unit through systemd-analyze, the compose file and the Dockerfile by their contents.
The container itself is built and run by deploy/smoke-test.sh (from .ci/run: it needs the network)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
KUBERNETES_VERSION = "1.30.0"


def manifests() -> dict[str, dict]:
    return {
        doc["kind"]: doc
        for path in sorted(KUBERNETES.glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc and doc.get("kind") != "Kustomization"
    }


@pytest.mark.parametrize("kind", ["Namespace", "ConfigMap", "Secret", "DaemonSet", "Service"])
def test_manifest_matches_the_kubernetes_schema(kind):
    validation = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate")
    validation.validate(manifests()[kind], KUBERNETES_VERSION, strict=True)


def test_manifest_validation_can_fail():
    validation = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate")
    broken = manifests()["DaemonSet"]
    broken["spec"]["template"]["spec"]["containers"][0]["securityContext"]["runAsNonRoot"] = "yes"
    with pytest.raises(validation.ValidationError):
        validation.validate(broken, KUBERNETES_VERSION, strict=True)


def test_daemonset_runs_with_least_privilege():
    pod = manifests()["DaemonSet"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    context = container["securityContext"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert context == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert "privileged" not in str(container)
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    host_paths = {v["hostPath"]["path"] for v in pod["volumes"] if "hostPath" in v}
    assert host_paths == {"/dev/vfio", "/run/vgpustream/qemu", "/var/lib/vgpustream"}
    assert pod["nodeSelector"] == {"vgpustream.io/gpu-host": "true"}
    secret = manifests()["Secret"]["metadata"]["name"]
    assert any(
        e["valueFrom"]["secretKeyRef"]["name"] == secret
        for e in container["env"]
        if "valueFrom" in e and "secretKeyRef" in e["valueFrom"]
    )


def test_service_monitor_points_at_the_service():
    # the ServiceMonitor CRD is not among the Kubernetes schemas: check that it finds the Service
    monitor, service = manifests()["ServiceMonitor"], manifests()["Service"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    labels = service["metadata"]["labels"]
    assert all(labels.get(k) == v for k, v in monitor["spec"]["selector"]["matchLabels"].items())
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]} and endpoint["path"] == "/metrics"


def unit_for_this_machine(tmp_path: Path) -> Path:
    """The unit with ExecStart pointed at this machine's vgpustream (verify checks that it exists)."""
    executable = shutil.which("vgpustream")
    if executable is None:
        pytest.skip("vgpustream is not installed as a command (pip install -e .)")
    text = (DEPLOY / "systemd" / "vgpustream.service").read_text()
    unit = tmp_path / "vgpustream.service"
    unit.write_text(text.replace("/opt/vgpustream/bin/vgpustream", executable))
    return unit


def test_systemd_unit_verifies(tmp_path):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is missing (apt-get install systemd)")
    unit = unit_for_this_machine(tmp_path)
    run = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True, text=True, check=False
    )
    assert run.returncode == 0, run.stderr
    assert "Unknown" not in run.stderr and "Failed" not in run.stderr, run.stderr


def test_systemd_unit_is_hardened(tmp_path):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is missing (apt-get install systemd)")
    unit = unit_for_this_machine(tmp_path)
    run = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        check=False,
    )
    match = re.search(r"Overall exposure level for \S+: ([\d.]+)", run.stdout + run.stderr)
    assert match, run.stdout + run.stderr
    assert float(match[1]) <= 3.0, f"exposure {match[1]} (0 = locked down, 10 = unprotected)\n{run.stdout[-3000:]}"


def test_compose_wires_turn_into_vgpustream_without_hard_coded_credentials():
    text = (DEPLOY / "compose.yaml").read_text()
    compose = yaml.safe_load(text)
    assert set(compose["services"]) == {"vgpustream", "coturn"}
    environment = compose["services"]["vgpustream"]["environment"]
    assert environment["VGPUSTREAM_ICE_SERVER"].startswith("turn:")
    for key in ("VGPUSTREAM_OPERATOR_TOKEN", "VGPUSTREAM_TURN_USERNAME", "VGPUSTREAM_TURN_CREDENTIAL"):
        assert re.fullmatch(r"\$\{\w+:\?[^}]*\}", environment[key]), f"{key} must come from the environment"
    assert "--user=${TURN_USERNAME}:${TURN_PASSWORD}" in compose["services"]["coturn"]["command"]


def test_dockerfile_final_stage_is_small_unprivileged_and_healthchecked():
    text = (DEPLOY / "Dockerfile").read_text()
    final = text[text.rindex("\nFROM ") :]
    assert "AS build" in text and "COPY --from=build /opt/vgpustream /opt/vgpustream" in final
    for compiler in ("gcc", "build-essential", "g++", "python3-dev"):
        assert compiler not in final
    assert re.search(r"^USER vgpustream$", final, re.MULTILINE)
    assert "HEALTHCHECK" in final and "/healthz" in final
    assert "PYTHONUNBUFFERED=1" in final
