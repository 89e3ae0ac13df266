#!/usr/bin/env bash
# deploy/smoke-test.sh: build the container image with podman, run it, and watch it through WHEP.
#
# For a person or CI (.ci/run), as root on Debian 12, where there is neither a Docker engine nor an image
# registry: installs podman if missing, makes a Debian base image with debootstrap (once), builds
# deploy/Dockerfile, runs it the way the Kubernetes DaemonSet does (read-only root, no capabilities,
# no new privileges, a state volume), waits for /healthz and podman's health check, has a loopback aiortc
# viewer decode stamped frames through WHEP, and stops it. The container is always removed.
# Needs the network (apt, debootstrap, PyPI) and the project in the host's Python (pip install -e .).
#
# Environment: VGPUSTREAM_PODMAN_DIR (podman's storage and settings, default /var/tmp/vgpustream-podman),
# BASE_IMAGE (default localhost/debian:bookworm, made here; e.g. docker.io/library/debian:bookworm-slim
# where a registry is reachable), DEBIAN_MIRROR (for debootstrap).
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
WORK=${VGPUSTREAM_PODMAN_DIR:-/var/tmp/vgpustream-podman}
BASE=${BASE_IMAGE:-localhost/debian:bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
IMAGE=localhost/vgpustream:smoke
NAME=vgpustream-smoke-$$
STATE=$WORK/state-$$

now() { date +%s.%N; }
START=$(now)
LAST=$START
TIMINGS=()
# `phase NAME` ends the phase that ran since the last call, names it and prints the running total
phase() {
  local t
  t=$(now)
  TIMINGS+=("$1 $(awk -v a="$t" -v b="$LAST" 'BEGIN { printf "%.1fs", a - b }')")
  LAST=$t
  awk -v a="$t" -v b="$START" -v what="$1" 'BEGIN { printf "[smoke %5.1fs] %s\n", a - b, what }'
}
fail() {
  echo "smoke: FAILED: $*" >&2
  exit 1
}
trap 'echo "smoke: FAILED: line $LINENO: $BASH_COMMAND (exit $?)" >&2' ERR

[ "$(id -u)" = 0 ] || fail "run as root (podman with storage in $WORK)"
python3 -c 'import vgpustream.testing.receiver' 2>/dev/null ||
  fail "the viewer needs the project in the host's Python: python3 -m pip install -e ."

PACKAGES=(podman buildah debootstrap runc uidmap containernetworking-plugins catatonit iptables curl)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "smoke: installing ${missing[*]}"
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi
phase "packages"

# podman settings that work on this machine kind (../shared/notes/containers.md): runc (crun fails on
# hybrid cgroups), cgroupfs, file events, limits below the hard limits, overlay storage in a work folder
mkdir -p "$WORK"
cat >"$WORK/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
cat >"$WORK/storage.conf" <<CONF
[storage]
driver = "overlay"
graphroot = "$WORK/storage"
runroot = "$WORK/run"
CONF
export CONTAINERS_CONF=$WORK/containers.conf CONTAINERS_STORAGE_CONF=$WORK/storage.conf

if [ "$BASE" = localhost/debian:bookworm ] && ! podman image exists "$BASE"; then
  echo "smoke: making the base image $BASE with debootstrap from $MIRROR"
  rm -rf "$WORK/rootfs"
  debootstrap --variant=minbase bookworm "$WORK/rootfs" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 ||
    { tail -n 20 "$WORK/debootstrap.log"; fail "debootstrap (log: $WORK/debootstrap.log)"; }
  # TLS from inside the build may go through an intercepting proxy: trust what the host trusts (the
  # image's ca-certificates package adds these to its bundle). Only this local base carries them.
  if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    mkdir -p "$WORK/rootfs/usr/local/share/ca-certificates"
    cp /usr/local/share/ca-certificates/*.crt "$WORK/rootfs/usr/local/share/ca-certificates/"
  fi
  tar -C "$WORK/rootfs" -c . | podman import --quiet - "$BASE" >/dev/null
  rm -rf "$WORK/rootfs"
fi
phase "base image"

# --format docker: the OCI image format has no HEALTHCHECK, and podman would drop it.
# A local base is never looked for in a registry.
pull=missing
[[ $BASE != localhost/* ]] || pull=never
podman build --format docker --pull="$pull" --network=host --build-arg BASE="$BASE" \
  --ignorefile deploy/Dockerfile.dockerignore -f deploy/Dockerfile -t "$IMAGE" . >"$WORK/build.log" 2>&1 ||
  { tail -n 40 "$WORK/build.log"; fail "podman build (log: $WORK/build.log)"; }
phase "build ($(podman image inspect --format '{{.Size}}' "$IMAGE" | awk '{printf "%d MB", $1 / 1e6}'))"

PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
TOKEN=$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')
cleanup() {
  podman rm -f -t 0 "$NAME" >/dev/null 2>&1 || true
  rm -rf "$STATE"
  # the previous builds' layers: without this every run leaves ~1 GB behind
  podman image prune -f >/dev/null 2>&1 || true
  local joined
  printf -v joined '%s; ' "${TIMINGS[@]}"
  echo "smoke: timings: ${joined}total $(awk -v a="$(now)" -v b="$START" 'BEGIN { printf "%.0fs", a - b }')"
}
trap cleanup EXIT
# the state directory belongs to the image's user, as the DaemonSet's hostPath must
install -d -o 10001 -g 10001 -m 0700 "$STATE"
# Run it as the DaemonSet does. The port goes in the environment, where the health check reads it too.
# Periodic health checks need systemd timers, which this machine lacks: `podman healthcheck run` below
# runs the check itself (podman and its clean-up process still complain about systemd: that goes to a log).
podman run -d --name "$NAME" --network=host --health-interval=disable \
  --read-only --tmpfs /tmp --cap-drop=ALL --security-opt=no-new-privileges \
  -v "$STATE:/var/lib/vgpustream" \
  -e VGPUSTREAM_OPERATOR_TOKEN="$TOKEN" -e VGPUSTREAM_PORT="$PORT" \
  "$IMAGE" --host-address 127.0.0.1 --source synthetic:640x360@30 \
  >/dev/null 2>"$WORK/podman.log" || { cat "$WORK/podman.log"; fail "podman run"; }

for _ in $(seq 1 150); do
  curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
  [ "$(podman inspect --format '{{.State.Running}}' "$NAME")" = true ] || break
  sleep 0.1
done
curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 ||
  { podman logs "$NAME" | tail -n 30; fail "/healthz never answered on port $PORT"; }
phase "start to /healthz"

podman healthcheck run "$NAME" >/dev/null || fail "podman's health check (the image's HEALTHCHECK) failed"
[ "$(podman inspect --format '{{.State.Health.Status}}' "$NAME")" = healthy ] ||
  fail "podman reports the container $(podman inspect --format '{{.State.Health.Status}}' "$NAME"), not healthy"
uid=$(podman exec "$NAME" id -u)
[ "$uid" != 0 ] || fail "the container runs as root"
if podman exec "$NAME" sh -c 'command -v gcc cc c++ make' >/dev/null; then
  fail "a compiler is in the final image"
fi
[ -s "$STATE/vgpustream.sqlite3" ] || fail "no database in the state volume"
phase "healthy, uid $uid, no compiler, state on the volume"

python3 deploy/smoke_check.py "http://127.0.0.1:$PORT" "$TOKEN" ||
  { podman logs "$NAME" 2>&1 | tail -n 30; fail "no stamped frames through WHEP"; }
phase "WHEP viewer"

# SIGTERM must end it cleanly well before podman's 10 s escalation to SIGKILL
podman stop -t 10 "$NAME" >/dev/null 2>>"$WORK/podman.log"
code=$(podman inspect --format '{{.State.ExitCode}}' "$NAME")
[ "$code" = 0 ] || { podman logs "$NAME" 2>&1 | tail -n 20; fail "exit status $code after SIGTERM"; }
phase "stop"
echo "smoke: passed"
