#!/usr/bin/env bash
# deploy/smoke-test.sh: build the container image with podman, run it, and watch it through WHEP.
#
# Runs as root on Debian 12 (a person or .ci/run): installs podman if missing, makes a Debian base
# image locally (no registry needed), builds deploy/Dockerfile, starts the container, waits for
# /healthz and podman's health check, then a loopback aiortc viewer must decode stamped frames.
# Needs the project installed in the host's Python (pip install -e .) for the viewer.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
WORK=${VGPUSTREAM_PODMAN_DIR:-/var/tmp/vgpustream-podman}
IMAGE=localhost/vgpustream:smoke
BASE=localhost/debian:bookworm
NAME=vgpustream-smoke-$$
T0=$(date +%s)
step() { echo "[smoke $(( $(date +%s) - T0 ))s] $*"; }

PACKAGES=(podman buildah debootstrap runc uidmap containernetworking-plugins catatonit iptables curl)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  step "installing ${missing[*]}"
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi

# podman settings that work on this machine kind: runc (crun fails on hybrid cgroups), cgroupfs,
# file events, limits below the hard limits, overlay storage in a work folder
mkdir -p "$WORK"
cat > "$WORK/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
cat > "$WORK/storage.conf" <<CONF
[storage]
driver = "overlay"
graphroot = "$WORK/storage"
runroot = "$WORK/run"
CONF
export CONTAINERS_CONF=$WORK/containers.conf CONTAINERS_STORAGE_CONF=$WORK/storage.conf

if ! podman image exists "$BASE"; then
  step "making the base image $BASE with debootstrap"
  rm -rf "$WORK/rootfs"
  debootstrap --variant=minbase bookworm "$WORK/rootfs" http://deb.debian.org/debian >/dev/null
  # TLS from inside the build may go through an intercepting proxy: trust what the host trusts
  if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    mkdir -p "$WORK/rootfs/usr/local/share/ca-certificates"
    # (the image installs Debian's ca-certificates, which adds these to its bundle)
    cp /usr/local/share/ca-certificates/*.crt "$WORK/rootfs/usr/local/share/ca-certificates/"
  fi
  tar -C "$WORK/rootfs" -c . | podman import - "$BASE" >/dev/null
  rm -rf "$WORK/rootfs"
fi

step "building $IMAGE"
# --format docker: the OCI image format has no HEALTHCHECK, and podman would drop it
podman build --format docker --network=host --build-arg BASE="$BASE" -f deploy/Dockerfile -t "$IMAGE" . \
  >"$WORK/build.log" 2>&1 ||
  { tail -n 40 "$WORK/build.log"; exit 1; }

PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
TOKEN=$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')
cleanup() { podman rm -f "$NAME" >/dev/null 2>&1 || true; }
trap cleanup EXIT
step "running $NAME on port $PORT"
# the port goes in the environment, where the image's health check reads it too; periodic checks
# need systemd timers, which this machine lacks: `podman healthcheck run` below runs the check itself
podman run -d --name "$NAME" --network=host --health-interval=disable \
  -e VGPUSTREAM_OPERATOR_TOKEN="$TOKEN" -e VGPUSTREAM_PORT="$PORT" "$IMAGE" \
  --host-address 127.0.0.1 --source synthetic:640x360@30 >/dev/null

for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
  sleep 0.2
done
curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null || { podman logs "$NAME"; echo "smoke: /healthz never answered"; exit 1; }
step "/healthz answers"
[ "$(podman exec "$NAME" id -u)" != 0 ] || { echo "smoke: the container runs as root"; exit 1; }
podman healthcheck run "$NAME" >/dev/null || { echo "smoke: podman's health check failed"; exit 1; }
step "health check passes, runs as uid $(podman exec "$NAME" id -u)"

python3 deploy/smoke_check.py "http://127.0.0.1:$PORT" "$TOKEN" || { podman logs "$NAME" | tail -n 30; exit 1; }
step "passed"
