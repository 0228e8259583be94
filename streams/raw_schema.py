"""A Faust schema for topics whose keys and values stay bytes.

Every input topic of the worker carries bytes that the agents decode themselves
(`streams.vitals_codec`, `streams.ecg_codec`, `streams.fhir`), so Faust's
deserialisation has nothing to do. Yet its generic schema still runs, for each
message, the serializer registry's lookup and the ``raw`` codec for the key and the
value, then builds the event through `App.create_event`, which reads
``app.conf.Event`` through Faust's settings registry every time: about 1.7 % of the
worker's core at 1,000 beds (py-spy). `RawSchema` builds the event directly from
the message's own key and value, which is what that chain returned for bytes (and
None for a missing key or value).
"""

from __future__ import annotations

from typing import Any

import faust

__all__ = ["RawSchema"]


class RawSchema(faust.Schema[bytes, bytes]):
    """``key_type`` and ``value_type`` bytes, serializers ``raw``, decoded for free."""

    def __init__(self) -> None:
        super().__init__(key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")

    def compile(self, app: Any, *, on_key_decode_error: Any = None, on_value_decode_error: Any = None,
                default_propagate: bool = False) -> Any:
        event = app.conf.Event

        async def decode(message: Any, *, propagate: bool = default_propagate) -> Any:
            return event(app, message.key, message.value, message.headers, message)

        return decode
