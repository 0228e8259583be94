"""A token bucket, one per WebSocket connection, for the messages a client sends.

A dashboard sends a command when a person clicks; a burst of twenty in a second is
already generous. What the bucket stops is a runaway or hostile client that would
otherwise keep the gateway appending events (each command is a database write) as
fast as it can send. Pure: the caller passes the time (monotonic seconds), so the
tests need no clock.
"""

from __future__ import annotations

__all__ = ["TokenBucket"]


class TokenBucket:
    """``rate`` tokens per second, holding at most ``burst``; starts full."""

    def __init__(self, rate: float, burst: int, now: float) -> None:
        if rate <= 0:
            raise ValueError(f"rate: {rate} is not positive")
        if burst < 1:
            raise ValueError(f"burst: {burst} is less than 1")
        self._rate, self._burst = rate, float(burst)
        self._tokens, self._at = float(burst), now

    def take(self, now: float) -> bool:
        """Spend one token if there is one; False means the message is over the limit.
        A clock that goes backwards adds nothing (it never refills the bucket)."""
        elapsed = max(0.0, now - self._at)
        self._at = max(self._at, now)
        self._tokens = min(self._burst, self._tokens + elapsed * self._rate)
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True
