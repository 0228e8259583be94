"""Topic names. Every name carries the configured prefix so runs can share a broker."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TopicNames"]


@dataclass(frozen=True, slots=True)
class TopicNames:
    prefix: str

    @property
    def vitals(self) -> str:
        """1 Hz vital-sign numerics, JSON, keyed by pseudonymous patient id."""
        return f"{self.prefix}.vitals"

    @property
    def ecg(self) -> str:
        """Binary ECG chunks (contracts/ecg-chunk.v1.md), keyed by pseudonymous patient id."""
        return f"{self.prefix}.ecg"

    @property
    def fhir(self) -> str:
        """FHIR R4 vital-signs Observations or Bundles, JSON, keyed by pseudonymous patient id."""
        return f"{self.prefix}.fhir"

    @property
    def dead_letter(self) -> str:
        """Rejected input: JSON envelopes (contracts/deadletter.v2.schema.json) with the
        original bytes (in slices past 256 KiB), reason and source topic/partition/offset."""
        return f"{self.prefix}.deadletter"

    @property
    def app_id(self) -> str:
        """Faust application id, also the consumer group."""
        return f"{self.prefix}-worker"
