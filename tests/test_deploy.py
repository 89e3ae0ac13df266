"""Deployment files, checked offline: the Kubernetes manifests against the schemas kubernetes-validate ships,
the systemd unit with systemd-analyze, the compose file by interpolating it, the Dockerfile by its text, and
every setting they pass against vgpustream's own settings loader.

The image itself is built, run and watched through WHEP by deploy/smoke-test.sh, which .ci/run starts
before the tests (a build needs the network; the tests run without one).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import shutil
import subprocess
import urllib.request
from pathlib import Path, PurePosixPath
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import referencing
import yaml
from kubernetes_validate.utils import schema_contents

from vgpustream.gateway.settings import GatewaySettings
from vgpustream.settings import add_arguments, env_name, load_settings
from vgpustream.testing.server import free_port, serve
from vgpustream.testing.server import gateway as gateway_process
from vgpustream.transports.iceservers import IceServers

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
UNIT = DEPLOY / "systemd" / "vgpustream.service"
# the oldest Kubernetes the manifests are meant for, and the newest whose schemas are installed
KUBERNETES_VERSIONS = ["1.28.0", kubernetes_validate.latest_version()]
CORE_KINDS = ["Namespace", "ConfigMap", "Secret", "DaemonSet", "Service"]


def manifests() -> dict[str, dict]:
    """Every object of the hosts under deploy/kubernetes/ by kind (each kind appears once)."""
    objects = [doc for path in sorted(set(KUBERNETES.glob("*.yaml")) - set(GATEWAY_FILES)) for doc in objects_in(path)]
    by_kind = {doc["kind"]: doc for doc in objects}
    assert len(by_kind) == len(objects), "one object per kind"
    return by_kind


GATEWAY_FILES = sorted(KUBERNETES.glob("gateway-*.yaml"))


def gateway_manifests() -> dict[str, dict]:
    """Every object of the gateway's (deploy/kubernetes/gateway-*.yaml) by kind and name: Secret/vgpustream-gateway."""
    objects = [doc for path in GATEWAY_FILES for doc in objects_in(path)]
    by_name = {f"{doc['kind']}/{doc['metadata']['name']}": doc for doc in objects}
    assert len(by_name) == len(objects), "one object of each kind and name"
    return by_name


def objects_in(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def container_of(daemonset: dict) -> dict:
    (container,) = daemonset["spec"]["template"]["spec"]["containers"]
    return container


def parse_settings(argv: list[str], environ: dict[str, str]):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return load_settings(parser.parse_args(argv), environ)


# -- Kubernetes ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("kind", CORE_KINDS)
def test_manifest_matches_the_kubernetes_schema(kind, version):
    # strict: unknown fields (a misspelt securityContext key) fail too
    kubernetes_validate.validate(manifests()[kind], version, strict=True)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("name", sorted(gateway_manifests()))
def test_gateway_manifest_matches_the_kubernetes_schema(name, version):
    kubernetes_validate.validate(gateway_manifests()[name], version, strict=True)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (["securityContext", "runAsNonRoot"], "yes"),  # wrong type
        (["securityContext", "readOnlyRootFS"], True),  # unknown field
        (["livenessProbe", "httpGet", "port"], None),  # wrong type
    ],
)
def test_manifest_validation_catches_mistakes(path, value):
    daemonset = manifests()["DaemonSet"]
    target = container_of(daemonset)
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(daemonset, KUBERNETES_VERSIONS[-1], strict=True)


def test_kustomization_lists_every_manifest():
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    files = {p.name for p in KUBERNETES.glob("*.yaml")} - {"kustomization.yaml"}
    # the ServiceMonitor needs the Prometheus operator's CRD, so it is listed but commented out
    assert set(kustomization["resources"]) == files - {"servicemonitor.yaml"}
    assert "# - servicemonitor.yaml" in (KUBERNETES / "kustomization.yaml").read_text()
    namespace = manifests()["Namespace"]["metadata"]["name"]
    for kind, doc in (manifests() | gateway_manifests()).items():
        if kind not in ("Namespace", "Kustomization"):
            assert doc["metadata"]["namespace"] == namespace, kind


def test_daemonset_runs_with_least_privilege():
    daemonset = manifests()["DaemonSet"]
    pod = daemonset["spec"]["template"]["spec"]
    container = container_of(daemonset)
    assert pod["nodeSelector"] == {"vgpustream.io/gpu-host": "true"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == image_user() != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    assert not pod.get("hostPID") and not pod.get("hostIPC")
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    # exactly these host paths: the VFIO nodes, the QEMU D-Bus sockets (read-only), the state
    host_paths = {v["name"]: v["hostPath"]["path"] for v in pod["volumes"] if "hostPath" in v}
    assert sorted(host_paths.values()) == ["/dev/vfio", "/run/vgpustream/qemu", "/var/lib/vgpustream"]
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    qemu = next(name for name, path in host_paths.items() if path == "/run/vgpustream/qemu")
    assert mounts[qemu].get("readOnly") is True
    # a read-only root needs somewhere to write temporary files
    assert any(m["mountPath"] == "/tmp" for m in container["volumeMounts"])


def test_daemonset_probes_and_secrets():
    container = container_of(manifests()["DaemonSet"])
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    # not /readyz: one VM's lost source must not take the node out of the Service or stall a rollout
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"http": 8080}
    daemonset = manifests()["DaemonSet"]
    secret = manifests()["Secret"]
    refs = {
        e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"] if "secretKeyRef" in e.get("valueFrom", {})
    }
    assert set(refs) == {env_name("turn_credential")}, "the operator token is not an environment variable"
    for ref in refs.values():
        assert ref["name"] == secret["metadata"]["name"] and ref["key"] in secret["stringData"]
    # the operator token is a file of the Secret's, read-only, readable by the pod's group only
    environ = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    token_file = PurePosixPath(environ[env_name("operator_token_file")])
    (volume,) = [v for v in daemonset["spec"]["template"]["spec"]["volumes"] if "secret" in v]
    assert volume["secret"]["secretName"] == secret["metadata"]["name"]
    assert volume["secret"]["defaultMode"] == 0o440
    assert daemonset["spec"]["template"]["spec"]["securityContext"]["fsGroup"] == image_user()
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
    assert mount["readOnly"] is True and PurePosixPath(mount["mountPath"]) == token_file.parent
    assert {"key": "operator-token", "path": token_file.name} in volume["secret"]["items"]
    assert "operator-token" in secret["stringData"]
    assert parse_settings([], environ).operator_token_file == Path(token_file), "the service reads it from there"
    # secrets only ever come from the Secret, never as plain values (a *_FILE value is a path, not a secret)
    assert not any(
        re.search("TOKEN|CREDENTIAL|PASSWORD", e["name"]) and not e["name"].endswith("_FILE") and "value" in e
        for e in container["env"]
    )
    assert "REPLACE" in secret["stringData"]["operator-token"], "the placeholder must say it is one"


def test_gateway_runs_two_replicas_that_a_drain_leaves_one_of_with_least_privilege():
    gateway = gateway_manifests()
    deployment = gateway["Deployment/vgpustream-gateway"]
    pod = deployment["spec"]["template"]["spec"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["selector"]["matchLabels"] == labels
    budget = gateway["PodDisruptionBudget/vgpustream-gateway"]["spec"]
    assert budget == {"minAvailable": 1, "selector": {"matchLabels": labels}}
    assert gateway["Service/vgpustream-gateway"]["spec"]["selector"] == labels
    (container,) = pod["containers"]
    assert container["command"] == ["vgpustream", "gateway", "--host", "0.0.0.0"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert gateway["Service/vgpustream-gateway"]["spec"]["ports"][0]["targetPort"] == container["ports"][0]["name"]
    assert pod["securityContext"]["runAsUser"] == image_user() and pod["securityContext"]["runAsNonRoot"] is True
    assert pod["automountServiceAccountToken"] is False, "DNS discovery needs no Kubernetes API access"
    assert container["securityContext"] == container_of(manifests()["DaemonSet"])["securityContext"]


def test_gateway_settings_find_the_hosts_and_read_the_secrets_it_mounts():
    gateway = gateway_manifests()
    pod = gateway["Deployment/vgpustream-gateway"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    environ = {e["name"]: e["value"] for e in container["env"]}
    assert not any(re.search("TOKEN|KEY", name) and not name.endswith("_FILE") for name in environ)
    parser = argparse.ArgumentParser()
    add_arguments(parser, GatewaySettings)
    settings = load_settings(parser.parse_args([]), environ, kind=GatewaySettings)
    assert settings.port == container["ports"][0]["containerPort"]
    service = manifests()["Service"]
    assert settings.dns_name == f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc.cluster.local"
    assert [p["name"] for p in service["spec"]["ports"]] == ["http"], "the SRV records the gateway asks for"
    secrets = {name.split("/")[1]: doc for name, doc in gateway.items() if name.startswith("Secret/")}
    secrets["vgpustream-operator"] = manifests()["Secret"]
    mounts = {m["name"]: PurePosixPath(m["mountPath"]) for m in container["volumeMounts"]}
    files = {}
    for volume in pod["volumes"]:
        secret = volume["secret"]
        assert secret["defaultMode"] == 0o440
        for item in secret["items"]:
            assert item["key"] in secrets[secret["secretName"]]["stringData"], item
            files[mounts[volume["name"]] / item["path"]] = item["key"]
    for path in (settings.operator_token_file, settings.host_token_file, settings.signing_key_file):
        assert PurePosixPath(path) in files, f"{path} is a file of a mounted Secret"
    for doc in secrets.values():
        assert all("REPLACE" in value for value in doc["stringData"].values() if value), "placeholders say so"


def test_the_ingress_leads_to_the_gateway_with_the_tested_proxy_s_timeouts():
    """Every path goes to the gateway's Service, and ingress-nginx keeps sockets and buffering as
    deploy/nginx/vgpustream.conf does (the one tests/test_nginx.py proves with the WebSocket transport)."""
    gateway = gateway_manifests()
    ingress = gateway["Ingress/vgpustream-gateway"]
    (rule,) = ingress["spec"]["rules"]
    (path,) = rule["http"]["paths"]
    service = gateway["Service/vgpustream-gateway"]
    assert (path["path"], path["pathType"]) == ("/", "Prefix")
    assert path["backend"]["service"] == {"name": service["metadata"]["name"], "port": {"name": "http"}}
    assert rule["host"] in ingress["spec"]["tls"][0]["hosts"], "HTTPS: WebCodecs needs a secure context"
    conf = (DEPLOY / "nginx" / "vgpustream.conf").read_text()
    hours = {name: int(value) for name, value in re.findall(r"proxy_(read|send)_timeout (\d+)h;", conf)}
    annotations = ingress["metadata"]["annotations"]
    prefix = "nginx.ingress.kubernetes.io/"
    for name in ("read", "send"):
        assert int(annotations[f"{prefix}proxy-{name}-timeout"]) == hours[name] * 3600
    assert "proxy_buffering off;" in conf and annotations[f"{prefix}proxy-buffering"] == "off"
    (body,) = re.findall(r"client_max_body_size (\S+);", conf)
    assert annotations[f"{prefix}proxy-body-size"] == body


def test_only_gateways_reach_the_hosts_http_port():
    policy = gateway_manifests()["NetworkPolicy/vgpustream-hosts-from-gateways"]["spec"]
    daemonset = manifests()["DaemonSet"]
    deployment = gateway_manifests()["Deployment/vgpustream-gateway"]
    assert policy["podSelector"]["matchLabels"] == daemonset["spec"]["template"]["metadata"]["labels"]
    (rule,) = policy["ingress"]
    gateways = {"podSelector": {"matchLabels": deployment["spec"]["template"]["metadata"]["labels"]}}
    assert gateways in rule["from"]
    assert rule["ports"] == [{"port": container_of(daemonset)["ports"][0]["name"], "protocol": "TCP"}]


def test_configmap_holds_valid_settings(tmp_path):
    """The TOML in the ConfigMap, with its commented-out examples switched on, loads as vgpustream settings."""
    container = container_of(manifests()["DaemonSet"])
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "config"]
    ((name, text),) = manifests()["ConfigMap"]["data"].items()
    assert container["args"] == ["--config", f"{mount['mountPath']}/{name}"]
    examples = re.sub(r"^# (\w+ = )", r"\1", text, flags=re.MULTILINE)
    assert examples != text, "the examples are there"
    for toml in (text, examples):
        config = tmp_path / name
        config.write_text(toml)
        settings = parse_settings(["--config", str(config)], {env_name("turn_credential"): "from-the-secret"})
        assert settings.port == 8080
    servers = IceServers(settings).for_server()
    assert servers and servers[0].credential == "from-the-secret"


# The Prometheus operator's ServiceMonitor CRD (monitoring.coreos.com/v1) is not among the Kubernetes
# schemas: the example's metadata and label selector are checked against Kubernetes' own ObjectMeta and
# LabelSelector schemas, its endpoints against this excerpt of the CRD's openAPIV3Schema (the fields used).
SERVICE_MONITOR_ENDPOINT = {
    "type": "object",
    "required": ["port"],
    "additionalProperties": False,
    "properties": {
        "port": {"type": "string"},
        "path": {"type": "string"},
        "scheme": {"enum": ["http", "https"]},
        "interval": {
            "type": "string",
            "pattern": r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$",
        },
        "scrapeTimeout": {"type": "string"},
        "authorization": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "type": {"type": "string"},
                "credentials": {
                    "type": "object",
                    "required": ["key"],
                    "additionalProperties": False,
                    "properties": {
                        "name": {"type": "string"},
                        "key": {"type": "string"},
                        "optional": {"type": "boolean"},
                    },
                },
            },
        },
    },
}


def validate_against_kubernetes_definition(document: dict, definition: str) -> None:
    """Validate `document` against one shipped Kubernetes definition, e.g. objectmeta-meta-v1."""
    folder = f"kubernetes-json-schema/v{KUBERNETES_VERSIONS[-1]}-local-strict"
    schema = schema_contents(f"{folder}/{definition}.json", KUBERNETES_VERSIONS[-1])
    definitions = schema_contents(f"{folder}/_definitions.json", KUBERNETES_VERSIONS[-1])
    registry = referencing.Resource.from_contents(definitions) @ referencing.Registry()
    jsonschema.Draft202012Validator(schema, registry=registry).validate(document)


def test_service_monitor_is_valid_and_finds_the_service():
    monitor, service = manifests()["ServiceMonitor"], manifests()["Service"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(monitor) == {"apiVersion", "kind", "metadata", "spec"}
    assert set(monitor["spec"]) <= {"selector", "endpoints", "namespaceSelector", "jobLabel"}
    validate_against_kubernetes_definition(monitor["metadata"], "objectmeta-meta-v1")
    validate_against_kubernetes_definition(monitor["spec"]["selector"], "labelselector-meta-v1")
    for endpoint in monitor["spec"]["endpoints"]:
        jsonschema.validate(endpoint, SERVICE_MONITOR_ENDPOINT)
    # the excerpt does catch mistakes
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"port": "http", "interval": "15 seconds"}, SERVICE_MONITOR_ENDPOINT)
    # it selects the Service, by a port the Service names, at the path vgpustream serves metrics on
    labels = service["metadata"]["labels"]
    assert all(labels.get(k) == v for k, v in monitor["spec"]["selector"]["matchLabels"].items())
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]} and endpoint["path"] == "/metrics"
    # with the operator token, which /metrics needs: the Secret's key
    secret = manifests()["Secret"]
    credentials = endpoint["authorization"]["credentials"]
    assert endpoint["authorization"]["type"] == "Bearer" and credentials["name"] == secret["metadata"]["name"]
    assert credentials["key"] in secret["stringData"]
    assert service["spec"]["selector"] == manifests()["DaemonSet"]["spec"]["selector"]["matchLabels"]


# -- systemd ---------------------------------------------------------------------------------------------


def unit_for_this_machine(tmp_path: Path) -> Path:
    """The unit with ExecStart pointed at this machine's vgpustream (verify checks that the program exists)."""
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is missing (apt-get install systemd)")
    executable = shutil.which("vgpustream")
    if executable is None:
        pytest.skip("vgpustream is not installed as a command (pip install -e .)")
    unit = tmp_path / "vgpustream.service"
    unit.write_text(UNIT.read_text().replace("/opt/vgpustream/bin/vgpustream", executable))
    return unit


def test_systemd_unit_verifies(tmp_path):
    unit = unit_for_this_machine(tmp_path)
    run = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True, text=True, check=False
    )
    assert run.returncode == 0, run.stderr
    # verify reports unknown or misplaced settings as warnings only
    assert run.stderr.strip() == "", run.stderr


def test_systemd_unit_is_hardened(tmp_path):
    unit = unit_for_this_machine(tmp_path)
    run = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        check=False,
    )
    match = re.search(r"Overall exposure level for \S+: ([\d.]+)", run.stdout + run.stderr)
    assert match, run.stdout + run.stderr
    assert float(match[1]) <= 2.0, f"exposure {match[1]} (0 = locked down, 10 = unprotected)\n{run.stdout[-3000:]}"


def test_systemd_unit_settings():
    lines = [line for line in UNIT.read_text().splitlines() if line and not line.startswith("#")]
    settings: dict[str, list[str]] = {}
    for line in lines:
        if "=" in line:
            key, value = line.split("=", 1)
            settings.setdefault(key, []).append(value)
    for key, value in {
        "ProtectSystem": "strict",
        "PrivateTmp": "yes",
        "NoNewPrivileges": "yes",
        "DevicePolicy": "closed",
        "ProtectHome": "yes",
        "DynamicUser": "yes",
        "StateDirectory": "vgpustream",
    }.items():
        assert settings[key] == [value], key
    # DeviceAllow takes a node's path or "char-<major name>", no globs
    assert settings["DeviceAllow"] == ["/dev/vfio/vfio rw", "char-vfio rw"]
    assert "AF_PACKET" not in settings["RestrictAddressFamilies"][0]
    # the operator token is a credential file, not an environment variable
    assert settings["LoadCredential"] == ["operator-token:/etc/vgpustream/operator-token"]
    assert "--operator-token-file %d/operator-token" in settings["ExecStart"][0]
    assert not any("TOKEN" in value or "CREDENTIAL" in value for value in settings["Environment"])
    assert "VGPUSTREAM_STATE_DIR=%S/vgpustream" in settings["Environment"][0]


# -- compose ---------------------------------------------------------------------------------------------


CLUSTER = ("compose.yaml", "compose.cluster.yaml")
"""Two hosts and the gateway in front of them on one machine."""


class MissingVariable(Exception):
    """A ${VAR:?message} whose variable is unset or empty."""


def interpolate(value: Any, environ: dict[str, str]) -> Any:
    """Compose's interpolation of the parsed file's values: $$, ${VAR}, ${VAR:-default}, ${VAR:?error} and
    their forms without the colon (which apply only when VAR is unset, not when it is empty)."""
    if isinstance(value, dict):
        return {key: interpolate(item, environ) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, environ) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match[0] == "$$":
            return "$"
        name, operator, argument = match["name"], match["operator"] or "", match["argument"] or ""
        current = environ.get(name)
        missing = current is None or (current == "" and operator.startswith(":"))
        if operator.endswith("?") and missing:
            raise MissingVariable(f"{name}: {argument}")
        if operator.endswith("-") and missing:
            return argument
        return current or ""

    return re.sub(r"\$\$|\$\{(?P<name>\w+)(?:(?P<operator>:?[-?])(?P<argument>[^}]*))?\}", substitute, value)


def compose_environment() -> dict[str, str]:
    """The example env file, with test values filled in where it leaves secrets empty."""
    environ = {}
    for line in (DEPLOY / "compose.env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            key, value = line.split("=", 1)
            environ[key] = value or f"test-{key.lower()}"
    return environ


def test_compose_refuses_to_start_without_its_credentials():
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    with pytest.raises(MissingVariable):
        interpolate(compose, {})
    environ = compose_environment()
    for secret in ("VGPUSTREAM_OPERATOR_TOKEN", "TURN_PASSWORD"):
        assert (DEPLOY / "compose.env.example").read_text().count(f"{secret}=\n") == 1, "leave secrets empty"
        with pytest.raises(MissingVariable):
            interpolate(compose, {**environ, secret: ""})
    assert "deploy/.env" in (ROOT / ".gitignore").read_text().splitlines(), "the filled-in env file stays untracked"


@pytest.mark.parametrize("files", [("compose.yaml",), CLUSTER])
def test_compose_has_no_hard_coded_credentials(files):
    compose = compose_model(*files)
    for name, service in compose["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if re.search("TOKEN|CREDENTIAL|PASSWORD|SECRET|USERNAME", key):
                assert re.fullmatch(r"\$\{\w+:\?[^}]*\}", str(value)), f"{name}: {key} must come from the environment"
        for argument in service.get("command") or []:
            if re.search("user|password|secret|auth", argument):
                assert "${" in argument, f"{name}: {argument}"


def test_compose_wires_coturn_into_vgpustream_settings():
    environ = compose_environment()
    compose = interpolate(yaml.safe_load((DEPLOY / "compose.yaml").read_text()), environ)
    assert set(compose["services"]) == {"vgpustream", "coturn", "nginx"}
    vgpustream, coturn = compose["services"]["vgpustream"], compose["services"]["coturn"]
    # vgpustream loads exactly these settings from the environment compose gives it
    settings = parse_settings([], {k: str(v) for k, v in vgpustream["environment"].items()})
    assert settings.operator_token == environ["VGPUSTREAM_OPERATOR_TOKEN"]
    servers = IceServers(settings).for_server()
    assert [s.url for s in servers] == [
        f"turn:{environ['TURN_HOST']}:3478?transport=udp",
        f"turn:{environ['TURN_HOST']}:3478?transport=tcp",
    ]
    for server in servers:
        assert (server.username, server.credential) == (environ["TURN_USERNAME"], environ["TURN_PASSWORD"])
    # ... and coturn accepts those credentials on the port in the URLs
    assert f"--user={environ['TURN_USERNAME']}:{environ['TURN_PASSWORD']}" in coturn["command"]
    assert "--listening-port=3478" in coturn["command"] and "--lt-cred-mech" in coturn["command"]
    assert vgpustream["build"]["dockerfile"] == "deploy/Dockerfile"


def test_compose_puts_nginx_in_front_with_the_tested_configuration():
    """The tls profile's nginx runs deploy/nginx/vgpustream.conf (the one tests/test_nginx.py proves), finds
    its certificate and key where that file names them, and proxies to the port vgpustream listens on."""
    compose = interpolate(yaml.safe_load((DEPLOY / "compose.yaml").read_text()), compose_environment())
    nginx, vgpustream = compose["services"]["nginx"], compose["services"]["vgpustream"]
    assert nginx["profiles"] == ["tls"] and nginx["network_mode"] == vgpustream["network_mode"] == "host"
    mounts = dict(volume.removesuffix(":ro").split(":") for volume in nginx["volumes"])
    assert mounts.pop("./nginx/vgpustream.conf").startswith("/etc/nginx/conf.d/")
    text = (DEPLOY / "nginx" / "vgpustream.conf").read_text()
    named = set(re.findall(r"^\s*ssl_certificate(?:_key)? (\S+);", text, re.MULTILINE))
    assert named == set(mounts.values()), (named, mounts)
    (upstream,) = re.findall(r"proxy_pass http://127\.0\.0\.1:(\d+);", text)
    assert upstream == str(vgpustream["environment"]["VGPUSTREAM_PORT"])


def merged(base: Any, override: Any, key: str = "") -> Any:
    """`override` over `base` as compose merges a later file or an `extends`, for the keys these files use:
    mappings key by key, `volumes` by the path in the container, anything else replaced."""
    if isinstance(base, dict) and isinstance(override, dict):
        return {**base, **{k: merged(base[k], v, k) if k in base else v for k, v in override.items()}}
    if key == "volumes" and isinstance(base, list):
        return list({volume.split(":")[1]: volume for volume in [*base, *override]}.values())
    return override


def compose_model(*names: str) -> dict:
    """The compose files of deploy/ as `compose -f NAME -f NAME ...` reads them: merged in order, each service's
    `extends` resolved (it names a service as its file has it)."""
    model: dict = {}
    for name in names:
        model = merged(model, yaml.safe_load((DEPLOY / name).read_text()))
    for name, service in model["services"].items():
        if "extends" in service:
            extends = service.pop("extends")
            base = yaml.safe_load((DEPLOY / extends["file"]).read_text())["services"][extends["service"]]
            model["services"][name] = merged(base, service)
    return model


def gateway_settings(environ: dict[str, str]) -> GatewaySettings:
    parser = argparse.ArgumentParser()
    add_arguments(parser, GatewaySettings)
    return load_settings(parser.parse_args([]), environ, kind=GatewaySettings)


def environment_of(service: dict) -> dict[str, str]:
    return {key: str(value) for key, value in service["environment"].items()}


def test_compose_cluster_runs_two_hosts_and_the_gateway_in_front_of_them():
    environ = compose_environment()
    services = interpolate(compose_model(*CLUSTER), environ)["services"]
    assert set(services) == {"vgpustream", "vgpustream-2", "gateway", "coturn", "nginx"}
    hosts = [parse_settings([], environment_of(services[name])) for name in ("vgpustream", "vgpustream-2")]
    gateway = gateway_settings(environment_of(services["gateway"]))
    assert gateway.static_nodes == {host.node_name: f"http://127.0.0.1:{host.port}" for host in hosts}
    assert [host.node_name for host in hosts] == ["gpu-host-1", "gpu-host-2"]
    assert len({hosts[0].port, hosts[1].port, gateway.port}) == 3, "one machine: a port each"
    assert gateway.host_token == hosts[0].operator_token == hosts[1].operator_token
    assert gateway.operator_token == environ["GATEWAY_OPERATOR_TOKEN"] != gateway.host_token, "its own token"
    first, second = services["vgpustream"], services["vgpustream-2"]
    states = [
        dict(v.split(":")[1::-1] for v in service["volumes"])["/var/lib/vgpustream"] for service in (first, second)
    ]
    assert states == ["state", "state-2"], "a state of its own each"
    assert {k: v for k, v in second.items() if k not in ("environment", "volumes")} == {
        k: v for k, v in first.items() if k not in ("environment", "volumes")
    }, "the second host is the first one's container"
    assert IceServers(hosts[1]).for_server() == IceServers(hosts[0]).for_server()
    assert services["gateway"]["entrypoint"] == ["vgpustream", "gateway", "--host", "0.0.0.0"]
    assert services["gateway"]["image"] == first["image"] and services["gateway"]["depends_on"] == [
        "vgpustream",
        "vgpustream-2",
    ]
    for key in ("network_mode", "read_only", "cap_drop", "security_opt"):
        assert services["gateway"][key] == first[key], key


def test_compose_cluster_needs_the_gateway_s_token_and_a_single_host_does_not():
    environ = compose_environment()
    without = {key: value for key, value in environ.items() if not key.startswith("GATEWAY_")}
    interpolate(compose_model("compose.yaml"), without)  # a host alone starts without a gateway's token
    with pytest.raises(MissingVariable, match="GATEWAY_OPERATOR_TOKEN"):
        interpolate(compose_model(*CLUSTER), {**environ, "GATEWAY_OPERATOR_TOKEN": ""})
    assert (DEPLOY / "compose.env.example").read_text().count("GATEWAY_OPERATOR_TOKEN=\n") == 1, "left empty"


def test_compose_cluster_s_settings_serve_a_cluster(tmp_path):
    """The hosts and the gateway, run with the environment the cluster's compose files give them, are a
    cluster: the gateway reaches both hosts with their token and names them as they name themselves."""
    ports = {"VGPUSTREAM_PORT": free_port(), "SECOND_HOST_PORT": free_port()}
    environ = compose_environment() | {name: str(port) for name, port in ports.items()}
    services = interpolate(compose_model(*CLUSTER), environ)["services"]
    own = {"VGPUSTREAM_ICE_SERVER", "VGPUSTREAM_TURN_USERNAME", "VGPUSTREAM_TURN_CREDENTIAL"}  # no TURN here
    with contextlib.ExitStack() as running:
        for name, port in zip(("vgpustream", "vgpustream-2"), ports.values(), strict=True):
            host_environment = {k: v for k, v in environment_of(services[name]).items() if k not in own}
            running.enter_context(serve(tmp_path / name, port=port, env=host_environment))
        gateway = running.enter_context(gateway_process(tmp_path, env=environment_of(services["gateway"])))
        request = urllib.request.Request(
            f"{gateway.url}/api/v1/sessions", headers={"Authorization": f"Bearer {environ['GATEWAY_OPERATOR_TOKEN']}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            listing = json.load(response)
    assert listing["nodes"] == [
        {"name": "gpu-host-1", "state": "up", "message": None},
        {"name": "gpu-host-2", "state": "up", "message": None},
    ]
    assert sorted((s["node"], s["id"]) for s in listing["sessions"]) == [
        ("gpu-host-1", "default"),
        ("gpu-host-2", "default"),
    ]


# -- settings everywhere ---------------------------------------------------------------------------------


def test_every_vgpustream_variable_is_a_setting():
    """VGPUSTREAM_* names in deploy/ are real settings, so a renamed setting cannot silently drift."""
    from vgpustream.settings import Settings  # noqa: PLC0415

    fields = {*Settings.__dataclass_fields__, *GatewaySettings.__dataclass_fields__}
    known = {env_name(name) for name in fields} | {"VGPUSTREAM_CONFIG"}
    own = {"VGPUSTREAM_PODMAN_DIR"}  # the smoke test's work folder
    used = {}
    for path in DEPLOY.rglob("*"):
        if path.is_file() and path.suffix != ".pyc":
            for name in re.findall(r"\bVGPUSTREAM_[A-Z_]+\b", path.read_text()):
                used.setdefault(name, path.relative_to(ROOT))
    assert used, "found no settings at all"
    unknown = {name: str(path) for name, path in used.items() if name not in known | own}
    assert not unknown, f"not vgpustream settings: {unknown}"


# -- Dockerfile ------------------------------------------------------------------------------------------


def dockerfile_stages() -> list[list[str]]:
    """The Dockerfile's instructions (continuation lines joined), split into stages."""
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    instructions = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    stages: list[list[str]] = [[]]
    for instruction in instructions:
        if instruction.startswith("FROM "):
            stages.append([])
        stages[-1].append(instruction)
    return stages


def image_user() -> int:
    (user,) = [i.split()[1] for i in dockerfile_stages()[-1] if i.startswith("USER ")]
    uid = user.split(":")[0]
    assert uid.isdigit(), "numeric, so that Kubernetes' runAsNonRoot can check it"
    return int(uid)


def test_dockerfile_final_stage_has_no_compiler_and_no_root():
    preamble, build, final = dockerfile_stages()
    assert preamble == ["ARG BASE=localhost/debian:bookworm"]
    assert build[0] == "FROM ${BASE} AS build" and final[0] == "FROM ${BASE}"
    assert any("pip wheel" in i for i in build)
    installs = " ".join(i for i in final if i.startswith("RUN "))
    for compiler in ("gcc", "g++", "clang", "build-essential", "python3-dev", "libc6-dev", "make", "cmake"):
        assert not re.search(rf"(^|\s){re.escape(compiler)}(\s|$)", installs), compiler
    # the final stage gets the built venv and nothing of the sources
    assert [i for i in final if i.startswith("COPY")] == ["COPY --from=build /opt/vgpustream /opt/vgpustream"]
    assert image_user() != 0
    assert final.index(next(i for i in final if i.startswith("USER "))) > max(
        n for n, i in enumerate(final) if i.startswith("RUN ")
    ), "nothing runs as root after USER"


def test_dockerfile_runs_the_service_with_a_health_check():
    final = dockerfile_stages()[-1]
    text = " ".join(final)
    assert "PYTHONUNBUFFERED=1" in text and "EXPOSE 8080" in final
    (healthcheck,) = [i for i in final if i.startswith("HEALTHCHECK ")]
    assert "/healthz" in healthcheck and "python3" in healthcheck and "curl" not in healthcheck
    (entrypoint,) = [i for i in final if i.startswith("ENTRYPOINT ")]
    assert entrypoint == 'ENTRYPOINT ["vgpustream", "serve", "--host", "0.0.0.0"]'


def test_build_context_ignore_file_keeps_what_the_image_copies():
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    assert "*" in ignore
    copied = [
        i.split()[1:-1] for stage in dockerfile_stages() for i in stage if i.startswith("COPY ") and "--from" not in i
    ]
    for source in (s for sources in copied for s in sources):
        assert f"!{source.rstrip('/')}" in ignore or f"!{source.rstrip('/')}/" in ignore, source
