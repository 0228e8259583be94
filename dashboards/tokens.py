"""Signed access tokens for the dashboard: compact JWS (RFC 7515) with HS256 only.

Written against the RFCs rather than taken from a library because the gateway
needs a small, fixed subset, and a subset is easier to audit than a general
implementation with options to get wrong:

- The algorithm is not negotiable. The header must say ``"alg": "HS256"``; ``none``,
  other HMAC sizes and every public-key algorithm are refused before the signature
  is looked at, which rules out the classic algorithm-confusion attacks
  (https://www.rfc-editor.org/rfc/rfc8725#section-2.1). A ``crit`` header is refused
  as RFC 7515 section 4.1.11 requires for extensions we do not implement.
- The signature is checked (in constant time, `hmac.compare_digest`) before any
  claim is trusted, and claims are only read from a token whose signature holds.
- Required claims (RFC 7519): ``sub`` (user), ``role``, ``wards``, ``aud`` (must be
  `AUDIENCE`), ``exp`` and ``iat``; ``nbf`` is honoured when present. There is no
  leeway on ``exp``: an alarm console must not accept a token its issuer says is dead.

Secrets shorter than 32 bytes are refused (RFC 7518 section 3.2: the key must be at
least as long as the hash output).

`verify_token` raises `TokenError` whose ``reason`` is short and fit for a WebSocket
close reason (``"token expired"``); it never says which part of a bad signature was
wrong.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import time
from dataclasses import dataclass
from typing import Any, Final, Literal, get_args

__all__ = [
    "AUDIENCE", "ALGORITHM", "ROLES", "Role", "Claims", "TokenError", "issue_token", "verify_token",
    "check_secret", "valid_name",
]

AUDIENCE: Final = "vigil-dashboard"
ALGORITHM: Final = "HS256"
Role = Literal["nurse", "physician", "auditor", "admin"]
ROLES: tuple[Role, ...] = get_args(Role)

_MIN_SECRET = 32
_MAX_TOKEN = 4096  # a header, a few claims and a signature: far below; refuse megabyte "tokens" early
_MAX_TTL_S = 30 * 24 * 3600
_IAT_SKEW_S = 60  # clocks of issuer and gateway may differ a little; "issued in the future" beyond this is forged
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
_B64URL = re.compile(r"^[A-Za-z0-9_-]*$")


class TokenError(Exception):
    """A token was refused. ``reason`` is short, safe to show the client and to use
    as a WebSocket close reason; the client should obtain a new token."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Claims:
    """Who is connected: what a verified token says."""

    user: str
    role: Role
    wards: tuple[str, ...]
    issued_at: int
    """Unix seconds."""
    expires_at: int
    """Unix seconds; the gateway closes the connection at this time."""


def valid_name(value: object) -> bool:
    """True for a user or ward name: letters, digits and ``_.:-``, at most 64, not
    starting with punctuation. Names end up in stream ids (``access-<user>``)."""
    return isinstance(value, str) and _NAME.match(value) is not None


def check_secret(secret: str | bytes) -> bytes:
    """The key as bytes; raises ValueError if it is too short to be an HS256 key."""
    key = secret.encode() if isinstance(secret, str) else bytes(secret)
    if len(key) < _MIN_SECRET:
        raise ValueError(f"the signing secret has {len(key)} bytes; HS256 needs at least {_MIN_SECRET}")
    return key


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    if not _B64URL.match(text) or len(text) % 4 == 1:
        raise TokenError("malformed token")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as e:
        raise TokenError("malformed token") from e


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(_b64decode(text))
    except (ValueError, UnicodeDecodeError) as e:
        raise TokenError("malformed token") from e
    if not isinstance(value, dict):
        raise TokenError("malformed token")
    return value


def _sign(key: bytes, signing_input: str) -> bytes:
    return hmac.new(key, signing_input.encode("ascii"), hashlib.sha256).digest()


def issue_token(secret: str | bytes, user: str, role: str, wards: list[str] | tuple[str, ...], ttl_s: float,
                now: float | None = None) -> str:
    """A signed token for ``user`` with ``role`` in ``wards``, valid ``ttl_s`` seconds
    from ``now`` (Unix seconds; default: the current time). Raises ValueError on a
    bad argument, so a typo at the command line never yields a token."""
    key = check_secret(secret)
    if not valid_name(user):
        raise ValueError(f"user: {user!r} must be 1-64 letters, digits or _.:- (it names an audit stream)")
    if role not in ROLES:
        raise ValueError(f"role: {role!r} is not one of {', '.join(ROLES)}")
    bad = [w for w in wards if not valid_name(w)]
    if bad:
        raise ValueError(f"wards: {bad[0]!r} is not a ward name (letters, digits or _.:-)")
    if not 0 < ttl_s <= _MAX_TTL_S:
        raise ValueError(f"ttl_s: {ttl_s} is outside 1-{_MAX_TTL_S} s")
    issued = int(time.time() if now is None else now)
    header = {"alg": ALGORITHM, "typ": "JWT"}
    claims = {"sub": user, "role": role, "wards": list(wards), "aud": AUDIENCE, "iat": issued,
              "exp": issued + int(ttl_s)}
    signing_input = ".".join(_b64encode(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims))
    return f"{signing_input}.{_b64encode(_sign(key, signing_input))}"


def _time_claim(claims: dict[str, Any], name: str, default: int | None = None) -> int:
    """A NumericDate claim (Unix seconds); ``default`` when absent, or refused if None."""
    value = claims.get(name)
    if value is None:
        if default is None:
            raise TokenError(f"missing claim: {name}")
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TokenError(f"invalid claim: {name}")
    return int(value)


def verify_token(secret: str | bytes, token: str, now: float | None = None) -> Claims:
    """The claims of ``token`` if it is genuine, current and meant for the dashboard;
    else raises `TokenError`. ``now``: Unix seconds (default: the current time)."""
    key = check_secret(secret)
    if not isinstance(token, str) or len(token) > _MAX_TOKEN or token.count(".") != 2:
        raise TokenError("malformed token")
    header_b64, claims_b64, signature_b64 = token.split(".")
    header = _json_object(header_b64)
    if header.get("alg") != ALGORITHM:
        raise TokenError("algorithm not allowed")
    if "crit" in header:
        raise TokenError("unsupported critical header")
    if not hmac.compare_digest(_sign(key, f"{header_b64}.{claims_b64}"), _b64decode(signature_b64)):
        raise TokenError("bad signature")
    claims = _json_object(claims_b64)
    at = time.time() if now is None else now
    audience = claims.get("aud")
    if audience != AUDIENCE and not (isinstance(audience, list) and AUDIENCE in audience):
        raise TokenError("wrong audience")
    expires = _time_claim(claims, "exp")
    issued = _time_claim(claims, "iat")
    not_before = _time_claim(claims, "nbf", default=0)
    if at >= expires:
        raise TokenError("token expired")
    if issued > at + _IAT_SKEW_S or at < not_before:
        raise TokenError("token not yet valid")
    user, role, wards = claims.get("sub"), claims.get("role"), claims.get("wards")
    if not isinstance(user, str) or not valid_name(user):
        raise TokenError("invalid claim: sub")
    if role not in ROLES:
        raise TokenError("invalid claim: role")
    if not isinstance(wards, list) or not all(valid_name(w) for w in wards):
        raise TokenError("invalid claim: wards")
    return Claims(user, role, tuple(wards), issued, expires)
