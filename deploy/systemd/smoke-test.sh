#!/usr/bin/env bash
# deploy/systemd/smoke-test.sh: run deploy/systemd/vgpustream.service under a real systemd, with all its
# hardening (dynamic user, system-call filter, address families, read-only system, closed device policy),
# and watch it through WHEP. Run deploy/smoke-test.sh first: this reuses its podman settings and image.
#
# systemd runs as PID 1 of a podman container (privileged, so that it can set up the sandbox). There,
# LoadCredential= fails for any unit (credentials come out unreadable; outside containers the same unit
# reads them), so a drop-in passes the operator token through the environment instead; everything
# else is the unit as shipped.
set -euo pipefail
cd "$(dirname "$0")/../.."
WORK=${VGPUSTREAM_PODMAN_DIR:-/var/tmp/vgpustream-podman}
export CONTAINERS_CONF=$WORK/containers.conf CONTAINERS_STORAGE_CONF=$WORK/storage.conf
IMAGE=localhost/vgpustream-systemd:smoke
NAME=vgpustream-systemd-smoke-$$
CONTEXT=$(mktemp -d)
fail() {
  echo "systemd smoke: FAILED: $*" >&2
  exit 1
}
cleanup() {
  podman rm -f -t 0 "$NAME" >/dev/null 2>&1 || true
  rm -rf "$CONTEXT"
  podman image prune -f >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'echo "systemd smoke: FAILED: line $LINENO: $BASH_COMMAND (exit $?)" >&2' ERR
SECONDS=0

podman image exists localhost/vgpustream:smoke || fail "no localhost/vgpustream:smoke: run deploy/smoke-test.sh first"
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
TOKEN=$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')
cp deploy/systemd/vgpustream.service "$CONTEXT/"
cat >"$CONTEXT/test.conf" <<CONF
[Service]
LoadCredential=
ExecStart=
ExecStart=/opt/vgpustream/bin/vgpustream serve
Environment=VGPUSTREAM_OPERATOR_TOKEN=$TOKEN VGPUSTREAM_PORT=$PORT VGPUSTREAM_HOST_ADDRESS=127.0.0.1
Environment=VGPUSTREAM_SOURCE=synthetic:640x360@30
CONF
# the image's venv is where the unit expects it; its user and state directory go, as on a fresh host
cat >"$CONTEXT/Containerfile" <<'EOF'
FROM localhost/vgpustream:smoke
USER root
WORKDIR /
RUN apt-get update -q && apt-get install -y -q --no-install-recommends systemd systemd-sysv \
 && rm -rf /var/lib/apt/lists/* && userdel vgpustream && rm -rf /var/lib/vgpustream \
 && (getent group kvm || groupadd --system kvm)
COPY vgpustream.service /etc/systemd/system/
COPY test.conf /etc/systemd/system/vgpustream.service.d/
RUN systemctl enable vgpustream && systemctl mask getty@tty1 console-getty systemd-logind
ENTRYPOINT ["/sbin/init"]
EOF
podman build --format docker --network=host -t "$IMAGE" "$CONTEXT" >"$WORK/systemd-build.log" 2>&1 ||
  { tail -n 30 "$WORK/systemd-build.log"; fail "podman build"; }
echo "systemd smoke: image built (${SECONDS}s)"

podman run -d --name "$NAME" --systemd=always --privileged --network=host "$IMAGE" >/dev/null 2>"$WORK/podman.log" ||
  { cat "$WORK/podman.log"; fail "podman run"; }
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
  sleep 0.2
done
status() { podman exec "$NAME" journalctl -u vgpustream --no-pager -n 30 || true; }
curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 || { status; fail "/healthz never answered"; }
[ "$(podman exec "$NAME" systemctl show -P User vgpustream)" != root ] || fail "the service runs as root"
echo "systemd smoke: the unit is active and /healthz answers (${SECONDS}s)"

python3 deploy/smoke_check.py "http://127.0.0.1:$PORT" "$TOKEN" || { status; fail "no stamped frames through WHEP"; }
metrics=$(curl -fsS -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/metrics")  # the operator's
grep -q '^process_open_fds ' <<<"$metrics" || fail "no process metrics under the sandbox"
podman exec "$NAME" test -s /var/lib/private/vgpustream/vgpustream.sqlite3 || fail "no database in the StateDirectory"
podman exec "$NAME" systemctl stop vgpustream
[ "$(podman exec "$NAME" systemctl show -P Result vgpustream)" = success ] || { status; fail "unclean stop"; }
if podman exec "$NAME" journalctl -u vgpustream --no-pager | grep -E 'Traceback|Operation not permitted|SECCOMP'; then
  fail "errors in the journal"
fi
echo "systemd smoke: passed (${SECONDS}s)"
