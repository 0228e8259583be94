"""`dashboards.tokens`: HS256 tokens, and every way a token must be refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import pytest

from dashboards.tokens import AUDIENCE, Claims, TokenError, issue_token, verify_token

SECRET = "s" * 32
NOW = 1_800_000_000.0


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict[str, Any], claims: dict[str, Any], secret: str = SECRET) -> str:
    """A token signed with HS256 whatever the header says (what an attacker can build)."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    sig = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(sig)}"


def claims(**changes: Any) -> dict[str, Any]:
    base = {"sub": "n1", "role": "nurse", "wards": ["ward-1"], "aud": AUDIENCE, "iat": int(NOW), "exp": int(NOW) + 60}
    return {k: v for k, v in (base | changes).items() if v is not None}


HS256 = {"alg": "HS256", "typ": "JWT"}


def refused(token: str, now: float = NOW, secret: str = SECRET) -> str:
    with pytest.raises(TokenError) as e:
        verify_token(secret, token, now=now)
    return e.value.reason


def test_round_trip_gives_the_claims_back() -> None:
    token = issue_token(SECRET, "nurse-7", "nurse", ["ward-1", "ward-3"], ttl_s=900, now=NOW)
    assert verify_token(SECRET, token, now=NOW + 899) == Claims("nurse-7", "nurse", ("ward-1", "ward-3"),
                                                               int(NOW), int(NOW) + 900)
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header == {"alg": "HS256", "typ": "JWT"}


def test_rfc7515_example_signature_is_accepted_and_then_judged_on_its_claims() -> None:
    # RFC 7515 appendix A.1: an HS256 JWS with a 64-byte key. Its signature must verify
    # (so ours is the standard HMAC over the standard signing input); its claims have
    # no "aud", so it is then refused for that, not for its signature.
    key = base64.urlsafe_b64decode("AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow==")
    token = ("eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9."
             "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ."
             "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk")
    with pytest.raises(TokenError, match="wrong audience"):
        verify_token(key, token, now=1300819000)
    tampered = token[:-2] + ("Xk" if not token.endswith("Xk") else "Yk")
    with pytest.raises(TokenError, match="bad signature"):
        verify_token(key, tampered, now=1300819000)


def test_expiry_is_exact() -> None:
    token = issue_token(SECRET, "n1", "nurse", ["ward-1"], ttl_s=60, now=NOW)
    assert verify_token(SECRET, token, now=NOW + 59.999).user == "n1"
    assert refused(token, now=NOW + 60) == "token expired"


@pytest.mark.parametrize("alg", ["none", "None", "HS512", "HS384", "RS256", "ES256", "", None])
def test_only_hs256_is_accepted(alg: str | None) -> None:
    header = {"typ": "JWT"} | ({"alg": alg} if alg is not None else {})
    assert refused(forge(header, claims())) == "algorithm not allowed"


def test_unsigned_token_is_refused() -> None:
    signing_input = f"{b64(json.dumps({'alg': 'none'}).encode())}.{b64(json.dumps(claims()).encode())}"
    assert refused(signing_input + ".") == "algorithm not allowed"


def test_changed_claims_break_the_signature() -> None:
    token = issue_token(SECRET, "n1", "nurse", ["ward-1"], ttl_s=60, now=NOW)
    head, _, sig = token.split(".")
    promoted = b64(json.dumps(claims(role="admin")).encode())
    assert refused(f"{head}.{promoted}.{sig}") == "bad signature"


def test_another_key_is_a_bad_signature() -> None:
    assert refused(forge(HS256, claims(), secret="x" * 32)) == "bad signature"


@pytest.mark.parametrize("token", ["", "abc", "a.b", "a.b.c.d", "!!.??.##", "e30.e30", "W10.e30.", "x" * 5000 + ".a.b"])
def test_malformed_tokens_are_refused(token: str) -> None:
    assert refused(token) == "malformed token"


def test_non_object_header_is_malformed() -> None:
    assert refused(f"{b64(b'[1]')}.{b64(b'{}')}.") == "malformed token"


def test_critical_extensions_are_refused() -> None:
    assert refused(forge(HS256 | {"crit": ["exp"]}, claims())) == "unsupported critical header"


@pytest.mark.parametrize(("changes", "reason"), [
    ({"aud": "another-app"}, "wrong audience"),
    ({"aud": None}, "wrong audience"),
    ({"exp": None}, "missing claim: exp"),
    ({"iat": None}, "missing claim: iat"),
    ({"exp": "tomorrow"}, "invalid claim: exp"),
    ({"exp": True}, "invalid claim: exp"),
    ({"iat": int(NOW) + 3600}, "token not yet valid"),
    ({"nbf": int(NOW) + 10}, "token not yet valid"),
    ({"sub": None}, "invalid claim: sub"),
    ({"sub": "a/b"}, "invalid claim: sub"),
    ({"role": "surgeon"}, "invalid claim: role"),
    ({"wards": "ward-1"}, "invalid claim: wards"),
    ({"wards": ["ward 1"]}, "invalid claim: wards"),
])
def test_bad_claims_are_named(changes: dict[str, Any], reason: str) -> None:
    assert refused(forge(HS256, claims(**changes))) == reason


def test_audience_may_be_a_list_and_small_clock_skew_is_tolerated() -> None:
    token = forge(HS256, claims(aud=["other", AUDIENCE], iat=int(NOW) + 30))
    assert verify_token(SECRET, token, now=NOW).role == "nurse"


def test_secrets_shorter_than_32_bytes_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 32"):
        issue_token("short", "n1", "nurse", [], ttl_s=60)
    with pytest.raises(ValueError, match="at least 32"):
        verify_token(b"short", "a.b.c")


@pytest.mark.parametrize(("user", "role", "wards", "ttl", "field"), [
    ("n 1", "nurse", [], 60, "user"),
    ("n1", "janitor", [], 60, "role"),
    ("n1", "nurse", ["../x"], 60, "wards"),
    ("n1", "nurse", [], 0, "ttl_s"),
    ("n1", "nurse", [], 10**9, "ttl_s"),
])
def test_issue_refuses_bad_arguments(user: str, role: str, wards: list[str], ttl: int, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        issue_token(SECRET, user, role, wards, ttl_s=ttl, now=NOW)
