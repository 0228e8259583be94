"""The simulated ward on the wire (`streams.ward`): deterministic, and each bed
sends at its own phase within the second."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable

import pytest

from streams.ecg_codec import decode_ecg_chunk
from streams.scenarios import ScenarioVitals
from streams.topics import TopicNames
from streams.vitals_codec import decode_vitals
from streams.ward import SimulatedWard, TimedMessage, bed_phase_us, send_second

TOPICS = TopicNames("t")
START_US = 1_764_122_400_000_000


def run(ward: SimulatedWard, seconds: int) -> list[list[TimedMessage]]:
    return [ward.timed_second(t, START_US) for t in range(seconds)]


def _watched(vitals: Callable[[int], ScenarioVitals], seen: Callable[[int], object]) -> Callable[[int], ScenarioVitals]:
    """A bed's vitals script that tells ``seen`` each second it is asked for."""
    def wrapper(t: int) -> ScenarioVitals:
        seen(t)
        return vitals(t)
    return wrapper


def test_same_seed_same_bytes_and_another_seed_differs() -> None:
    assert run(SimulatedWard(6, seed=3, topics=TOPICS), 4) == run(SimulatedWard(6, seed=3, topics=TOPICS), 4)
    assert run(SimulatedWard(6, seed=3, topics=TOPICS), 2) != run(SimulatedWard(6, seed=4, topics=TOPICS), 2)


def test_second_is_timed_second_without_the_times() -> None:
    timed = run(SimulatedWard(5, seed=1, topics=TOPICS), 3)
    plain = SimulatedWard(5, seed=1, topics=TOPICS)
    for t, messages in enumerate(timed):
        assert plain.second(t, START_US) == [(topic, key, value) for _, topic, key, value in messages]


def test_phases_are_whole_milliseconds_within_the_second_and_spread() -> None:
    ward = SimulatedWard(200, seed=11, topics=TOPICS)
    phases = ward.phases_us
    assert list(phases) == ward.patient_ids == [f"p{i:04d}" for i in range(1, 201)]
    assert all(0 <= p < 1_000_000 and p % 1000 == 0 for p in phases.values())
    assert phases == {pid: bed_phase_us(11, pid) for pid in phases}
    # Spread over the second, not bunched: every tenth of a second holds some beds.
    assert {p // 100_000 for p in phases.values()} == set(range(10))


def test_messages_are_stamped_and_ordered_by_their_send_time() -> None:
    ward = SimulatedWard(12, seed=5, topics=TOPICS)
    phases = ward.phases_us
    for t, messages in enumerate(run(ward, 3)):
        times = [at for at, *_ in messages]
        assert times == sorted(times)
        assert len(messages) == 24
        for at, topic, key, value in messages:
            pid = key.decode()
            assert at == START_US + t * 1_000_000 + phases[pid]
            if topic == TOPICS.ecg:
                chunk = decode_ecg_chunk(value)
                # The chunk is the second just past, sent once complete.
                assert (chunk.patient_id, chunk.sequence, chunk.first_sample_us) == (pid, t, at - 1_000_000)
            else:
                vitals = decode_vitals(value)
                assert vitals.patient_id == pid
                assert round(vitals.occurred_at.timestamp() * 1_000_000) == at


def test_seconds_must_be_asked_in_order() -> None:
    ward = SimulatedWard(1, topics=TOPICS)
    ward.second(0, START_US)
    with pytest.raises(ValueError, match="in order"):
        ward.second(2, START_US)


class _Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[float, str, bytes, bytes]] = []

    async def send(self, topic: str, value: bytes, key: bytes) -> None:
        self.sent.append((time.monotonic(), topic, key, value))


def test_send_second_paces_messages_by_their_send_time() -> None:
    messages: list[TimedMessage] = [(START_US + d, "a", b"k", b"v%d" % d) for d in (0, 1000, 60_000, 120_000)]
    producer = _Recorder()

    async def go() -> tuple[float, int]:
        began = time.monotonic()
        return began, await send_second(producer, messages, start_us=START_US, began=began)

    began, sent = asyncio.run(go())
    assert sent == 4
    assert [v for *_, v in producer.sent] == [b"v0", b"v1000", b"v60000", b"v120000"]
    assert producer.sent[2][0] - began >= 0.058 and producer.sent[3][0] - began >= 0.118
    fast = _Recorder()
    assert asyncio.run(send_second(fast, messages, start_us=START_US, began=None)) == 4
    assert fast.sent[-1][0] - fast.sent[0][0] < 0.05


def test_timed_messages_are_timed_second_made_bed_by_bed() -> None:
    eager, lazy = SimulatedWard(7, seed=2, topics=TOPICS), SimulatedWard(7, seed=2, topics=TOPICS)
    for t in range(3):
        assert list(lazy.timed_messages(t, START_US)) == eager.timed_second(t, START_US)
    # Lazy: asking for the next second checks the order at once, but makes nothing
    # until the publisher takes the messages, one bed (vitals, then ECG) at a time.
    made: list[str] = []
    ward = SimulatedWard(3, seed=2, topics=TOPICS)
    for bed in ward._beds:
        seen = functools.partial(lambda patient, _: made.append(patient), bed.patient_id)
        bed.scenario.vitals = _watched(bed.scenario.vitals, seen)  # type: ignore[method-assign, assignment]
    messages = ward.timed_messages(0, START_US)
    with pytest.raises(ValueError, match="in order"):
        ward.timed_messages(2, START_US)
    assert made == []
    first, second = next(messages), next(messages)
    assert (first[1], second[1]) == (TOPICS.vitals, TOPICS.ecg) and len(made) == 1
    rest = list(messages)
    assert len(rest) == 4 and len(made) == 3


def test_send_second_takes_messages_as_they_come() -> None:
    ward = SimulatedWard(4, seed=9, topics=TOPICS)
    producer = _Recorder()
    assert asyncio.run(send_second(producer, ward.timed_messages(0, START_US), start_us=START_US, began=None)) == 8
    assert [(topic, key, value) for _, topic, key, value in producer.sent] == \
        SimulatedWard(4, seed=9, topics=TOPICS).second(0, START_US)


def test_rendered_seconds_are_the_same_bytes_and_synthesise_nothing_when_sent() -> None:
    live, ahead = SimulatedWard(5, seed=7, topics=TOPICS), SimulatedWard(5, seed=7, topics=TOPICS)
    ahead.render(2)
    made: list[int] = []
    for bed in ahead._beds:
        bed.scenario.vitals = _watched(bed.scenario.vitals, made.append)  # type: ignore[method-assign, assignment]
    # Seconds 0-1 were rendered: sending them synthesises nothing; second 2 is made live,
    # from where the ECG generators stopped, then more are rendered after it.
    for t in range(2):
        assert ahead.timed_second(t, START_US) == live.timed_second(t, START_US)
    assert made == []
    assert ahead.timed_second(2, START_US) == live.timed_second(2, START_US)
    assert made == [2] * 5
    ahead.render(2)
    assert made == [2] * 5 + [3] * 5 + [4] * 5
    for t in (3, 4, 5):
        assert ahead.timed_second(t, START_US) == live.timed_second(t, START_US)


def test_render_counts_seconds() -> None:
    ward = SimulatedWard(2, topics=TOPICS)
    ward.render(0)
    with pytest.raises(ValueError, match=">= 0"):
        ward.render(-1)
    assert len(ward.timed_second(0, START_US)) == 4
