"""The gateway's settings: one validated object instead of a wide constructor.

`GatewayConfig.from_env` reads the ``VIGIL_*`` variables the gateway needs, for the
composition root (`vigil.cli`) to call once at start-up; nothing here reads the
environment at import time, and `dashboards.gateway.Gateway` only ever sees the
finished object. The limits a patient starts from (``VIGIL_CARE_AREA``,
``VIGIL_HR_HIGH_LIMIT``) are the worker's too, so `vigil.config.Settings` reads them
for both and the composition root sets `GatewayConfig.starting_limits`.

| variable | meaning | default |
| --- | --- | --- |
| ``VIGIL_JWT_SECRET`` | HS256 signing key, at least 32 bytes | required |
| ``VIGIL_GATEWAY_ORIGINS`` | comma-separated extra allowed ``Origin`` values | none (same host only) |
| ``VIGIL_DEFAULT_WARD`` | ward of patients never admitted; empty: no ward | ``ward-1`` |
| ``VIGIL_GATEWAY_DEMO`` | ``1``: serve ``/demo-token`` (loopback only) | ``0`` |
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from dashboards.tokens import Role, check_secret, valid_name
from detectors.alarm_limits import AlarmLimits, starting_limits

__all__ = ["GatewayConfig", "GatewayConfigError", "is_loopback"]


class GatewayConfigError(ValueError):
    """A gateway setting is missing or malformed; the message names the variable or field."""


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP addresses (``127.0.0.1``, ``[::1]``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    jwt_secret: str | bytes
    """HS256 key that `dashboards.tokens` signs and verifies with."""
    allowed_origins: tuple[str, ...] = ()
    """``Origin`` values accepted besides the gateway's own host (``https://ward.example``)."""
    default_ward: str | None = "ward-1"
    """Ward of patients without a ``PatientAdmitted`` event; None: visible to all-ward roles only."""
    starting_limits: AlarmLimits = field(default_factory=lambda: starting_limits("ward"))
    """Alarm limits a patient starts from before any ``set_limits``: the worker's
    (`detectors.alarm_limits.starting_limits`), against which a command is resolved."""
    queue_size: int = 1000
    """Events buffered per client before it is told to resync."""
    auth_timeout_s: float = 5.0
    ping_interval_s: float | None = 20.0
    ping_timeout_s: float | None = 20.0
    max_message_bytes: int = 64 * 1024
    command_rate: float = 10.0
    """Messages per second a client may send, on average ..."""
    command_burst: int = 20
    """... and at once."""
    demo: bool = False
    """Serve ``/demo-token`` so the demo page needs no login; only on a loopback address."""
    demo_user: str = "demo"
    demo_role: Role = "physician"
    demo_ttl_s: int = 12 * 3600

    def __post_init__(self) -> None:
        try:
            check_secret(self.jwt_secret)
        except ValueError as e:
            raise GatewayConfigError(f"jwt_secret: {e}") from e
        if self.default_ward is not None and not valid_name(self.default_ward):
            raise GatewayConfigError(f"default_ward: {self.default_ward!r} is not a ward name")
        for name in ("queue_size", "command_burst", "max_message_bytes", "demo_ttl_s"):
            if getattr(self, name) < 1:
                raise GatewayConfigError(f"{name}: {getattr(self, name)} is less than 1")
        if self.auth_timeout_s <= 0 or self.command_rate <= 0:
            raise GatewayConfigError("auth_timeout_s and command_rate must be positive")
        bad = [o for o in self.allowed_origins if not o.startswith(("http://", "https://"))]
        if bad:
            raise GatewayConfigError(f"allowed_origins: {bad[0]!r} is not an http(s) origin")

    def check_bind(self, host: str) -> None:
        """Raise `GatewayConfigError` if the gateway may not listen on ``host`` with
        these settings: demo tokens are handed to anyone who asks, so only on loopback."""
        if self.demo and not is_loopback(host):
            raise GatewayConfigError(f"demo mode serves tokens to anyone who asks: listen on a loopback address, "
                                     f"not {host!r}")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> GatewayConfig:
        env = os.environ if env is None else env
        secret = env.get("VIGIL_JWT_SECRET")
        if not secret:
            raise GatewayConfigError("VIGIL_JWT_SECRET is not set (32 or more random bytes, e.g. "
                                     "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`)")
        demo = env.get("VIGIL_GATEWAY_DEMO", "0")
        if demo not in ("0", "1"):
            raise GatewayConfigError(f"VIGIL_GATEWAY_DEMO: {demo!r} is not 0 or 1")
        origins = tuple(o.strip().rstrip("/") for o in env.get("VIGIL_GATEWAY_ORIGINS", "").split(",") if o.strip())
        try:
            return cls(jwt_secret=secret, allowed_origins=origins,
                       default_ward=env.get("VIGIL_DEFAULT_WARD", "ward-1") or None,
                       demo=demo == "1")
        except GatewayConfigError as e:
            raise GatewayConfigError(f"{e} (from the VIGIL_* environment)") from e
