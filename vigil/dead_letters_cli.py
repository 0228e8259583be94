"""``vigil dead-letters``: what the workers refused, for the operator who has to find out why.

Reads the dead-letter topic (``<prefix>.deadletter``, `streams.dead_letter`) from its
start, puts the slices of oversized messages back together, and prints one line per
refused message: where it was read, the reason, its size and key, and the detail.
``--json`` prints one JSON object per message instead (the payload whole, base64),
``--save DIR`` writes each original payload to ``DIR/<topic>-<partition>-<offset>.bin``
as it was sent, to be fixed and published again. ``--reason`` and ``--source-topic``
filter. It stops once it has read everything the topic held when it started, unless
``--follow``; then it prints a count by reason (to standard error with ``--json``).

It reads without a consumer group, so it commits nothing and moves no worker's
offsets. A message a restarted worker refused again (its dead letter was sent, the
acknowledgement was not) is shown once and counted as a repeat. A record on the
topic that is not a dead-letter envelope is reported, not skipped silently, and makes
the exit status 1.

The end of the topic is taken from each fetch's high watermark, not from ListOffsets,
which the demo's embedded broker can answer wrongly (../shared/notes/embedded-broker.md).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from streams.dead_letter import DeadLetter, DeadLetterAssembler, DeadLetterSource, decode_dead_letter
from streams.vitals_codec import Rejected

__all__ = ["DeadLetterReport", "run", "read_dead_letters"]

_FETCH_BYTES = 4 * 1024 * 1024


@dataclass
class DeadLetterReport:
    """What one reading of the topic found."""

    shown: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    repeats: int = 0
    unreadable: list[str] = field(default_factory=list)
    """One line per record that is not a dead-letter envelope."""
    incomplete: list[str] = field(default_factory=list)
    """One line per message some of whose slices were not on the topic."""
    seen: set[tuple[str, int, int]] = field(default_factory=set)

    def summary(self) -> str:
        by_reason = ", ".join(f"{r} {n}" for r, n in sorted(self.reasons.items(), key=lambda kv: (-kv[1], kv[0])))
        return (f"{self.shown} dead-lettered message(s)" + (f": {by_reason}" if by_reason else "")
                + f"; repeats {self.repeats}; unreadable records {len(self.unreadable)}; "
                  f"incomplete messages {len(self.incomplete)}")


def _line(letter: DeadLetter) -> str:
    src = letter.source
    key = "null" if src.key is None else src.key.decode("utf-8", "backslashreplace")
    size = "null" if letter.payload is None else f"{letter.payload_size} B"
    cut = f" (first {len(letter.payload or b'')} B only)" if letter.payload_truncated else ""
    return f"{src.topic}/{src.partition}/{src.offset}  {letter.reason}  {size}{cut}  key={key}  {letter.detail}"


def _json(letter: DeadLetter) -> str:
    return json.dumps({
        "reason": letter.reason, "detail": letter.detail, "source": letter.source.to_dict(),
        "payload_b64": None if letter.payload is None else base64.b64encode(letter.payload).decode(),
        "payload_size": letter.payload_size, "payload_truncated": letter.payload_truncated, "worker": letter.worker,
    }, ensure_ascii=True)


async def read_dead_letters(bootstrap: str, topic: str, on_letter: Callable[[DeadLetter], None],
                            on_unreadable: Callable[[str], None], *, follow: bool = False
                            ) -> list[tuple[DeadLetterSource, int, int]]:
    """Read ``topic`` from its start, giving ``on_letter`` each whole message (once its
    last slice is read) and ``on_unreadable`` a line for each record that is no
    envelope. Returns ``(source, bytes held, payload_size)`` of the messages still
    missing slices at the end."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                                auto_offset_reset="earliest", max_partition_fetch_bytes=_FETCH_BYTES,
                                fetch_max_bytes=2 * _FETCH_BYTES)
    try:
        await consumer.start()
        if topic not in await consumer.topics():  # (asking for it by name could create it)
            return []
        consumer.subscribe([topic])  # without a group: every partition, from the start
        async with asyncio.timeout(30):
            while not consumer.assignment():
                await asyncio.sleep(0.05)
        tps = sorted(consumer.assignment())
        await consumer.seek_to_beginning(*tps)
        assembler = DeadLetterAssembler()
        while True:
            batches = await consumer.getmany(timeout_ms=300)
            for tp, records in sorted(batches.items()):
                for record in records:
                    try:
                        letter = assembler.add(decode_dead_letter(record.value))
                    except Rejected as r:
                        on_unreadable(f"{tp.topic}/{tp.partition}/{record.offset}: {r.reason}: {r.detail}")
                        continue
                    if letter is not None:
                        on_letter(letter)
            if not follow and await _at_end(consumer, tps):
                return list(assembler.incomplete())
    finally:
        await consumer.stop()


async def _at_end(consumer: AIOKafkaConsumer, tps: Sequence[TopicPartition]) -> bool:
    for tp in tps:
        high = consumer.highwater(tp)
        if high is None or await consumer.position(tp) < high:
            return False
    return True


def run(bootstrap: str, topic: str, *, reasons: Sequence[str] = (), source_topic: str | None = None,
        as_json: bool = False, save: Path | None = None, follow: bool = False,
        out: TextIO | None = None, err: TextIO | None = None) -> int:
    """The command; its exit status (1 if the topic holds a record that is no dead letter)."""
    out = out or sys.stdout
    err = err or sys.stderr
    if save is not None:
        save.mkdir(parents=True, exist_ok=True)
    report = DeadLetterReport()

    def on_letter(letter: DeadLetter) -> None:
        src = letter.source
        if (reasons and letter.reason not in reasons) or (source_topic is not None and src.topic != source_topic):
            return
        where = (src.topic, src.partition, src.offset)
        if where in report.seen:
            report.repeats += 1
            return
        report.seen.add(where)
        report.shown += 1
        report.reasons[letter.reason] += 1
        print(_json(letter) if as_json else _line(letter), file=out, flush=follow)
        if save is not None and letter.payload is not None:
            (save / f"{src.topic}-{src.partition}-{src.offset}.bin").write_bytes(letter.payload)

    def on_unreadable(line: str) -> None:
        report.unreadable.append(line)
        print(f"unreadable record {line}", file=err)

    with contextlib.suppress(KeyboardInterrupt):
        try:
            left = asyncio.run(read_dead_letters(bootstrap, topic, on_letter, on_unreadable, follow=follow))
        except (KafkaError, TimeoutError) as e:
            print(f"vigil: cannot read {topic} from {bootstrap}: {e!r}", file=err)
            return 1
        for src, held, size in left:
            line = f"{src.topic}/{src.partition}/{src.offset}: {held} of its {size} bytes on the topic"
            report.incomplete.append(line)
            print(f"incomplete message {line}", file=err)
    print(report.summary(), file=err if as_json else out)
    return 1 if report.unreadable else 0
