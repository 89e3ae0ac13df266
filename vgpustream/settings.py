"""The service's configuration, in one place: CLI flags, then VGPUSTREAM_* environment, then a TOML file.

Every setting is a field of `Settings` whose metadata gives its help text; the flag (`--max-viewers`),
the environment variable (`VGPUSTREAM_MAX_VIEWERS`) and the TOML key (`max_viewers`) all derive from
the field's name, so `vgpustream serve --help` documents all three from this one table.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, get_args, get_origin, get_type_hints

from vgpustream.errors import VgpuStreamError
from vgpustream.media.encoder import EncoderSettings
from vgpustream.proxies import Networks, trusted_networks

RETENTION_INTERVAL = 3600.0
"""Seconds between two applications of a retention period (the recordings', the audit trail's); each is
also applied at start-up."""

DEFAULT_SOURCE = "synthetic:1280x720@30"
LOCAL_NAMES = ("localhost", "127.0.0.1", "::1")
"""The loopback names a Host header may carry by default, besides the listen address."""
ENV_PREFIX = "VGPUSTREAM_"
NODE_NAME = re.compile(r"[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?")
"""A node's name, as Kubernetes names its nodes (a DNS subdomain)."""


def _state_home() -> Path:
    """The per-user state directory; a user without a home (a systemd DynamicUser) gets ./state."""
    if os.environ.get("XDG_STATE_HOME"):
        return Path(os.environ["XDG_STATE_HOME"]) / "vgpustream"
    try:
        return Path.home() / ".local" / "state" / "vgpustream"
    except RuntimeError:  # no HOME and no passwd entry
        return Path("state").absolute()


def setting(help_text: str, *, cli: bool = True, default: Any = None, factory: Any = None) -> Any:
    """A Settings field with its help; `cli=False` keeps secrets off the command line (env/file only)."""
    metadata = {"help": help_text, "cli": cli}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class ViewerRules:
    """What every viewer of a session is held to (from the Settings of the same names)."""

    idle_timeout: float
    """Seconds a viewer may stay disconnected before it is dropped."""
    connect_timeout: float
    """Seconds an offer may take to connect; its seat is given back after that."""
    on_token_expiry: str
    """disconnect, or view: a viewer whose token expires keeps watching but controls nothing."""
    input_rate: float
    """Data-channel messages per second a viewer may send, in bursts of `input_burst`."""
    input_burst: int
    token_viewers: int
    """The viewers one viewer token may have at once, unless it was minted with its own number."""
    operator_seats: int
    """Seats of a session that only viewers of an operator token may take (when it has more than one seat), so
    that people's viewers, or someone's unfinished offers, never lock the operator out; none without tokens
    (--insecure-no-auth: every viewer is the one developer)."""


@dataclass(frozen=True)
class ServiceSettings:
    """What every web service of vgpustream (a host's server, the gateway) is configured with: where it listens,
    which names its links may be built from, who may frame its pages, its bodies' and its clients' connections'
    limits, and its logging."""

    host: str = setting("address to listen on", default="127.0.0.1")
    public_url: str | None = setting("base URL of console and WHEP links handed out (default: from the request)")
    allowed_host: tuple[str, ...] = setting(
        "a name (Host header) links may be built from when --public-url is not set (repeatable; default the "
        "listen address, a host's --host-address and the localhost names)",
        default=(),
    )
    frame_ancestors: tuple[str, ...] = setting(
        "an origin that may embed the console in a frame (repeatable; default none may)", default=()
    )
    max_sdp_bytes: int = setting("largest SDP body accepted", default=32 * 1024)
    max_json_bytes: int = setting("largest JSON body accepted", default=16 * 1024)
    log_level: str = setting("debug, info, warning or error", default="info")
    header_timeout: float = setting(
        "seconds a connection may take to send a request's headers, or stay idle between requests", default=10.0
    )
    max_client_connections: int = setting("open HTTP connections per client address", default=128)
    trusted_proxy: tuple[str, ...] = setting(
        "address or network (CIDR) of a proxy in front, such as the gateways' pods, whose X-Forwarded-For names "
        "the client that rate limits, connection bounds and the audit trail count (repeatable)",
        default=(),
    )
    rate_limit: float = setting(
        "token, WHEP and WebSocket requests per second per client address (a gateway: those that search every host "
        "for a session)",
        default=5.0,
    )
    rate_burst: int = setting("burst of those requests per client address", default=20)
    token_ttl: int = setting("default lifetime of viewer tokens in seconds", default=600)
    max_token_ttl: int = setting("longest lifetime a viewer token may be given, in seconds", default=86_400)
    token_max_viewers: int = setting(
        "viewers one viewer token may have at once, unless set when it is minted", default=4
    )

    def __post_init__(self) -> None:
        if not self.header_timeout > 0:
            raise VgpuStreamError("header timeout must be above 0")
        for name in ("max_client_connections", "token_ttl", "max_token_ttl", "token_max_viewers", "rate_burst"):
            if getattr(self, name) < 1:
                raise VgpuStreamError(f"{name} must be at least 1")
        if self.log_level not in ("debug", "info", "warning", "error"):
            raise VgpuStreamError("log level must be debug, info, warning or error")
        for origin in self.frame_ancestors:
            if not re.fullmatch(r"'self'|https?://[\w.*-]+(:\d{1,5})?", origin):
                raise VgpuStreamError(
                    f"frame ancestor {origin[:60]!r} must be 'self' or an origin like https://portal.example"
                )
        self.trusted_networks  # noqa: B018 - validates --trusted-proxy now
        for name in self.allowed_host:
            if not re.fullmatch(r"[\w.:\[\]-]{1,253}", name):
                raise VgpuStreamError(f"allowed host {name[:60]!r} must be a host name or address")

    @property
    def allowed_hosts(self) -> frozenset[str]:
        """The names (Host header, without the port) that links may be built from."""
        names = self.allowed_host or (*self.own_addresses, *LOCAL_NAMES)
        return frozenset(name.lower().strip("[]") for name in names)

    @property
    def trusted_networks(self) -> Networks:
        return trusted_networks(self.trusted_proxy)

    @property
    def own_addresses(self) -> tuple[str, ...]:
        """The service's own addresses, names links may be built from unless --allowed-host says otherwise."""
        return (self.host,)


@dataclass(frozen=True)
class Settings(ServiceSettings):
    port: int = setting("port to listen on", default=8080)
    source: str | None = setting(f"source URL of session 'default' (default {DEFAULT_SOURCE})")
    resolution: str | None = setting("size of the default synthetic source, e.g. 1920x1080")
    fps: int = setting("frame-rate cap of capture and encoding", default=30)
    bitrate: int = setting("H.264 bitrate in bit/s", default=4_000_000)
    keyframe_interval: float = setting("seconds between periodic keyframes", default=2.0)
    sound_bitrate: int = setting("Opus bitrate of a session's sound (QEMU sources) in bit/s", default=64_000)
    idle_sample_rate: float = setting(
        "captures per second of a session nobody watches (it encodes nothing; this keeps its state and "
        "thumbnail current)",
        default=1.0,
    )
    max_sessions: int = setting("sessions per server", default=16)
    max_viewers: int = setting("default viewers per session", default=16)
    ice_server: tuple[str, ...] = setting(
        "STUN/TURN server URL for viewers and the server (repeatable; comma-separated in the environment)",
        default=(),
    )
    turn_username: str | None = setting("username for the turn:/turns: servers (a static pair; see --turn-secret-file)")
    turn_credential: str | None = setting("credential for the turn:/turns: servers", cli=False)
    turn_secret_file: Path | None = setting(
        "file with the secret shared with the turn:/turns: servers (coturn's static-auth-secret): each viewer "
        "gets a credential of its own that expires with its token (TURN REST scheme)"
    )
    ice_gather_timeout: float = setting(
        "seconds a WHEP answer waits for server-reflexive and relay candidates; later ones serve the next viewer",
        default=0.3,
    )
    host_address: tuple[str, ...] = setting(
        "offer only these addresses as ICE host candidates (repeatable; default every non-loopback address)",
        default=(),
    )
    node_name: str | None = setting(
        "this host's node name in a cluster, which a gateway's control plane names sessions' hosts by (default "
        "the machine's host name; in Kubernetes, the pod's spec.nodeName)"
    )
    gateway_key_file: Path | None = setting(
        "file of the gateways' Ed25519 public keys (PEM): console links they signed are taken, checked offline "
        "(two keys while one is rotated)"
    )
    state_dir: Path = setting("directory of the SQLite state (sessions, tokens)", factory=_state_home)
    operator_token: str | None = setting("operator token for /api/v1", cli=False)
    operator_token_file: Path | None = setting("file with operator tokens for /api/v1, one per line")
    insecure_no_auth: bool = setting("serve the API and WHEP without any token (local development only)", default=False)
    no_console_link: bool = setting(
        "print no console link with a control token at start-up (where standard output is kept in logs)",
        default=False,
    )
    cors_origin: tuple[str, ...] = setting(
        "origin allowed to call WHEP and the API from a browser (repeatable)", default=()
    )
    tls_cert: Path | None = setting("TLS certificate (PEM); serve HTTPS with --tls-key")
    tls_key: Path | None = setting("TLS private key (PEM)")
    viewer_idle_timeout: float = setting("seconds a viewer may stay disconnected before it is dropped", default=30.0)
    viewer_connect_timeout: float = setting(
        "seconds a viewer's offer may take to connect; its seat is freed after that", default=10.0
    )
    on_token_expiry: str = setting(
        "what happens to a connected viewer when its token expires: disconnect, or view (input and clipboard "
        "refused from then on)",
        default="disconnect",
    )
    token_retention_days: float = setting(
        "days an expired or revoked token is kept before it is deleted (applied at start-up and hourly)",
        default=7.0,
    )
    input_rate: float = setting(
        "data-channel messages per second a viewer may send (the console's Type text sends up to 400)",
        default=1000.0,
    )
    input_burst: int = setting(
        "burst of data-channel messages a viewer may send; past it the viewer is disconnected", default=2000
    )
    metrics_public: bool = setting(
        "serve /metrics without a token (default: the operator token is needed)", default=False
    )
    audit_webhook: str | None = setting(
        "URL that every audit event is POSTed to as JSON (retried with backoff; never blocks a viewer)"
    )
    audit_webhook_secret_file: Path | None = setting(
        "file with a secret (at least 16 bytes) that signs each webhook POST: "
        "X-Vgpustream-Signature: sha256=<hex HMAC-SHA256 of the body>"
    )
    audit_retention_days: float = setting("days an audit event is kept (applied at start-up and hourly)", default=365.0)
    max_recordings: int = setting("recordings that may run at once per session", default=2)
    recording_retention_days: float = setting(
        "days a finished recording is kept (applied at start-up and hourly)", default=30.0
    )
    recording_retention_bytes: int = setting(
        "bytes all recordings may take; the oldest finished ones are deleted past it", default=20 * 1024**3
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if bool(self.tls_cert) != bool(self.tls_key):
            raise VgpuStreamError("--tls-cert and --tls-key go together")
        for name in (
            "port",
            "max_sessions",
            "max_viewers",
            "input_burst",
            "max_recordings",
            "recording_retention_bytes",
        ):
            if getattr(self, name) < 1:
                raise VgpuStreamError(f"{name} must be at least 1")
        if self.on_token_expiry not in ("view", "disconnect"):
            raise VgpuStreamError("on token expiry must be view or disconnect")
        for name in ("viewer_connect_timeout", "input_rate"):
            if not getattr(self, name) > 0:
                raise VgpuStreamError(f"{name.replace('_', ' ')} must be above 0")
        if not 0.1 <= self.idle_sample_rate <= 30:
            raise VgpuStreamError("idle sample rate must be within 0.1..30 per second")
        if not 6_000 <= self.sound_bitrate <= 510_000:
            raise VgpuStreamError("sound bitrate must be within Opus's 6 000..510 000 bit/s")
        self.encoder  # noqa: B018 - validates fps, bitrate and keyframe interval now, not at first use
        if self.source and self.resolution:
            raise VgpuStreamError("--resolution sizes the synthetic default source; put the size in --source instead")
        for name in ("recording_retention_days", "audit_retention_days", "token_retention_days"):
            if not 0 < getattr(self, name) <= 36_500:
                raise VgpuStreamError(f"{name.replace('_days', '').replace('_', ' ')} must be within 0..36500 days")
        if self.turn_secret_file and (self.turn_username or self.turn_credential):
            raise VgpuStreamError("--turn-secret-file and the static --turn-username/credential exclude each other")
        if not 0 < self.ice_gather_timeout <= 5:
            raise VgpuStreamError("ice gather timeout must be within 0..5 seconds")
        if self.audit_webhook_secret_file and not self.audit_webhook:
            raise VgpuStreamError("--audit-webhook-secret-file signs the --audit-webhook's POSTs: give both")
        if self.audit_webhook and not re.fullmatch(r"https?://\S{1,2000}", self.audit_webhook):
            raise VgpuStreamError("the audit webhook must be an http:// or https:// URL")
        if self.node_name and not NODE_NAME.fullmatch(self.node_name):
            raise VgpuStreamError(f"node name {self.node_name[:60]!r} must be a DNS name such as gpu-host-7")
        if self.resolution and not re.fullmatch(r"\d{2,5}x\d{2,5}", self.resolution):
            raise VgpuStreamError("resolution must look like 1920x1080")

    @property
    def default_source(self) -> str:
        """The source URL of session 'default'."""
        if self.source:
            return self.source
        return f"synthetic:{self.resolution or '1280x720'}@{self.fps}"

    @property
    def encoder(self) -> EncoderSettings:
        return EncoderSettings(bitrate=self.bitrate, fps=self.fps, keyframe_interval=self.keyframe_interval)

    @property
    def own_addresses(self) -> tuple[str, ...]:
        """The listen address and those offered to viewers (--host-address), where a gateway finds the host."""
        return (self.host, *self.host_address)

    @property
    def node(self) -> str:
        """The node name this host goes by (--node-name, else the machine's host name)."""
        return self.node_name or socket.gethostname()

    @property
    def viewer_rules(self) -> ViewerRules:
        return ViewerRules(
            idle_timeout=self.viewer_idle_timeout,
            connect_timeout=self.viewer_connect_timeout,
            on_token_expiry=self.on_token_expiry,
            input_rate=self.input_rate,
            input_burst=self.input_burst,
            token_viewers=self.token_max_viewers,
            operator_seats=0 if self.insecure_no_auth else 1,
        )

    @property
    def database(self) -> Path:
        return self.state_dir / "vgpustream.sqlite3"

    @property
    def audit_database(self) -> Path:
        return self.state_dir / "audit.sqlite3"

    @property
    def recordings(self) -> Path:
        return self.state_dir / "recordings"


Configuration = TypeVar("Configuration")
"""A settings dataclass whose fields are made with `setting()`: Settings, or a sibling command's own."""


def env_name(name: str) -> str:
    return ENV_PREFIX + name.upper()


def add_arguments(parser: argparse.ArgumentParser, kind: type = Settings) -> None:
    """Add a flag for every CLI setting of `kind`; defaults stay unset so that later sources can fill them."""
    parser.add_argument("--config", type=Path, help=f"TOML file of settings (also {ENV_PREFIX}CONFIG)")
    types = get_type_hints(kind)
    for f in dataclasses.fields(kind):
        name = f.name
        if not f.metadata["cli"]:
            continue
        flag = "--" + name.replace("_", "-")
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        shown = "" if default in (None, ()) else f" (default {default})"
        text = f"{f.metadata['help']}{shown} [env {env_name(name)}]"
        if types[name] is bool:
            parser.add_argument(flag, action="store_const", const=True, default=None, help=text)
        elif get_origin(types[name]) is tuple:
            parser.add_argument(flag, action="append", default=None, metavar="VALUE", help=text)
        else:
            parser.add_argument(flag, default=None, metavar=name.split("_")[-1].upper(), help=text)
    hidden = ", ".join(env_name(f.name) for f in dataclasses.fields(kind) if not f.metadata["cli"])
    parser.epilog = (
        "Each setting comes from its flag, else its environment variable, else the TOML file's key of the "
        f"same name (e.g. max_viewers = 8), else its default. Secrets ({hidden}) come from the environment or "
        "the file only."
    )


def load_settings(
    args: argparse.Namespace,
    environ: Mapping[str, str] = os.environ,
    *,
    kind: type[Configuration] = Settings,
    **overrides: Any,
) -> Configuration:
    """Settings of `kind` from parsed flags, then the environment, then the TOML file; `overrides` win over all."""
    types = get_type_hints(kind)
    config = args.config or environ.get(ENV_PREFIX + "CONFIG")
    values: dict[str, Any] = _from_file(Path(config), types) if config else {}
    for name, kind_of_value in types.items():
        if (raw := environ.get(env_name(name))) is not None:
            values[name] = _convert(name, kind_of_value, raw.split(",") if get_origin(kind_of_value) is tuple else raw)
        if (given := getattr(args, name, None)) is not None:
            values[name] = _convert(name, kind_of_value, given)
    values.update(overrides)
    return kind(**values)


def _from_file(path: Path, types: dict[str, Any]) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise VgpuStreamError(f"cannot read settings file {str(path)[:200]!r}: {exc}") from None
    unknown = sorted(set(data) - set(types))
    if unknown:
        raise VgpuStreamError(f"unknown setting(s) in {path.name}: {', '.join(unknown[:5])}")
    return {name: _convert(name, types[name], value) for name, value in data.items()}


def _convert(name: str, kind: Any, value: Any) -> Any:
    args = [a for a in get_args(kind) if a is not type(None)]
    base = args[0] if get_origin(kind) is not tuple and args else kind
    try:
        if get_origin(kind) is tuple:
            items = value if isinstance(value, list | tuple) else [value]
            return tuple(str(item).strip() for item in items if str(item).strip())
        if base is bool:
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("1", "true", "yes", "on"):
                return True
            if str(value).lower() in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(value)
        return base(value)
    except (TypeError, ValueError):
        raise VgpuStreamError(f"setting {name}: {str(value)[:60]!r} is not a valid {base.__name__}") from None
