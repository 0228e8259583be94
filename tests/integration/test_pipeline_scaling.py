"""Scaling out and in, on real Apache Kafka and PostgreSQL: workers join and leave
one consumer group while a ward streams in, and the store ends exactly as a single
undisturbed worker leaves it (same event ids and contents, same waveforms).

The group's own account (DescribeGroups) is the evidence that the partitions were
really split: at each stage the members' shares of the input partitions are
disjoint and cover every partition, and the committed offsets of every member that
owns a share advance, which only the partition's current owner can do. The topics
have 6 partitions, so every member of a group of one, two or three owns a share.

Every change moves partitions together with their table state and resume offset
(`streams.states`). A worker given a partition without its state restarts those
patients' ECG analysis, so their EcgAnalyzed windows differ from the undisturbed
run's; one that resumes past a message whose events were not yet durable loses
them; one that resumes too early with a stale state applies messages twice and
dead-letters them as stale. The comparison catches each.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import pytest
from aiokafka.structs import TopicPartition

from streams.topics import TopicNames
from tests.integration.pipeline_helpers import (
    WardFeed,
    caught_up,
    committed_offsets,
    create_topics,
    dead_letters,
    group_members,
    migrate,
    progress,
    same_stores,
    scratch_database,
    start_worker,
    stop_all,
    wait_for,
    wait_until,
)
from vigil.services.process import ManagedProcess, free_port

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

PATIENTS = 12
PARTITIONS = 6  # `vigil worker --partitions`: 6/1, 3+3, 2+2+2 at one, two and three members
PACE = 2.0  # ward seconds per second: 48 messages/s, well within one worker's capacity


Shares = dict[str, frozenset[TopicPartition]]


class Group:
    """Watches one consumer group through the broker's DescribeGroups."""

    def __init__(self, bootstrap: str, group: str, topics: TopicNames) -> None:
        self.bootstrap = bootstrap
        self.group = group
        self.inputs = {TopicPartition(t, p) for t in (topics.vitals, topics.ecg, topics.fhir) for p in range(PARTITIONS)}

    async def settled(self, members: int, *workers: ManagedProcess) -> Shares:
        """Wait for a stable group of ``members``; return each member's input partitions,
        checking that they are split: disjoint, and every one of them owned."""
        async def stable() -> Shares | None:
            state, assigned = await group_members(self.bootstrap, self.group)
            if state != "Stable" or len(assigned) != members:
                return None
            return {m: frozenset(tp for tp in parts if tp in self.inputs) for m, parts in assigned.items()}

        shares: Shares = await wait_until(f"{members} stable member(s) in {self.group}", stable, 120, *workers)
        owned = [tp for share in shares.values() for tp in share]
        assert len(owned) == len(set(owned)), f"a partition has two owners: {shares}"
        assert set(owned) == self.inputs, f"unowned partitions {self.inputs - set(owned)}"
        return shares

    async def each_member_commits(self, shares: Shares, *workers: ManagedProcess) -> None:
        """Wait until every member that owns input partitions has committed progress on
        one of them (only the current owner's commits are accepted), then check the
        group did not change meanwhile, so the progress is that member's."""
        before = await committed_offsets(self.bootstrap, self.group)
        owners = [share for share in shares.values() if share]

        async def advanced() -> bool:
            after = await committed_offsets(self.bootstrap, self.group)
            return all(any(after.get(tp, -1) > before.get(tp, -1) for tp in share) for share in owners)

        await wait_until(f"commits by each of {len(owners)} owner(s)", advanced, 90, *workers)
        state, assigned = await group_members(self.bootstrap, self.group)
        assert state == "Stable" and set(assigned) == set(shares), (state, set(assigned), set(shares))


async def test_workers_joining_and_leaving_lose_and_duplicate_nothing(
    apache_kafka: str, postgres_server: str, topic_prefix: str, tmp_path: Path
) -> None:
    topics = TopicNames(topic_prefix)
    await create_topics(apache_kafka, {topics.vitals: PARTITIONS, topics.ecg: PARTITIONS, topics.fhir: PARTITIONS,
                                       topics.dead_letter: 1})
    feed = WardFeed(apache_kafka, topics, PATIENTS, pace=PACE)
    workers: list[ManagedProcess] = []

    # Run B's workers are all given one metrics port: the first to start serves it, and
    # the others, finding it taken, must work on without metrics.
    shared_port = free_port()

    def worker(db: str, group: str, name: str) -> ManagedProcess:
        w = start_worker(apache_kafka, db, topic_prefix, tmp_path / f"{name}.log", group=group,
                         state_dir=tmp_path / name, partitions=PARTITIONS,
                         metrics_port=shared_port if name.startswith("b") else None)
        workers.append(w)
        return w

    with scratch_database(postgres_server) as undisturbed_db, scratch_database(postgres_server) as scaled_db:
        await migrate(undisturbed_db, scaled_db)
        group = Group(apache_kafka, f"{topic_prefix}-b", topics)
        try:
            feed.start()
            # Run A: one worker, undisturbed, alongside run B on the same topics.
            single = worker(undisturbed_db, f"{topic_prefix}-a", "a")
            # Run B: one worker, then two, then three; one leaves (SIGTERM), one crashes (SIGKILL).
            w1 = worker(scaled_db, group.group, "b1")
            await wait_for(scaled_db, lambda v, w: v > 0 and w > 0, 120, w1)
            alone = await group.settled(1, w1)
            (m1,) = alone

            w2 = worker(scaled_db, group.group, "b2")
            two = await group.settled(2, w1, w2)
            (m2,) = set(two) - {m1}
            assert two[m1] and two[m2], two
            await group.each_member_commits(two, w1, w2)

            w3 = worker(scaled_db, group.group, "b3")
            three = await group.settled(3, w1, w2, w3)
            (m3,) = set(three) - {m1, m2}
            assert three[m1] and three[m2] and three[m3], three
            await group.each_member_commits(three, w1, w2, w3)
            at_three = progress(scaled_db)

            await asyncio.to_thread(w1.stop)  # SIGTERM: a clean leave; its partitions move to the others
            left = w1.popen.returncode
            after_leave = await group.settled(2, w2, w3)
            assert set(after_leave) == {m2, m3}
            assert after_leave[m2] and after_leave[m3], after_leave
            await group.each_member_commits(after_leave, w2, w3)

            w2.kill()  # SIGKILL: the group notices after the session timeout
            after_crash = await group.settled(1, w3)
            assert set(after_crash) == {m3}
            # The survivor now owns everything, and carries on with all of it.
            at_crash = progress(scaled_db)
            await group.each_member_commits(after_crash, w3)
            await wait_for(scaled_db, lambda v, w: v > at_crash[0] and w > at_crash[1], 120, w3)

            feed.finish(5)
            sent = await feed.done()
            total = feed.total
            # Both groups have committed all the input: their stores are final.
            await caught_up(apache_kafka, group.group, sorted(group.inputs), 180, w3)
            await caught_up(apache_kafka, f"{topic_prefix}-a", sorted(group.inputs), 180, single)
            await stop_all([w3, single])
        finally:
            await feed.stop()
            await stop_all(workers)
        # The changes fell mid-stream: each found input still arriving.
        assert 0 < at_three[0] < at_crash[0] < total, (at_three, at_crash, total)

        undisturbed = same_stores(undisturbed_db, scaled_db, total)

    # Valid input only: nothing may have been dead-lettered (a stale timestamp or
    # sequence here would mean a message was applied twice).
    assert await dead_letters(apache_kafka, topics) == 0
    stages = [sorted(len(s) for s in x.values()) for x in (alone, two, three, after_leave, after_crash)]
    print(f"{sent} messages, {len(undisturbed.events)} events, {len(undisturbed.waveforms)} waveforms; "
          f"input partitions per member at 1/2/3/2/1 members: {stages}; w1 exit on SIGTERM {left}", file=sys.stderr)
    # A clean leave: SIGTERM stops the worker within ManagedProcess.stop's 15 s grace
    # period, not its SIGKILL fallback.
    tail = [line[:300] for line in w1.log_tail(5).splitlines()]
    assert left != -signal.SIGKILL, f"w1 did not exit on SIGTERM within 15 s; its log ends: {tail}"
    served = [w.log_path.read_text(errors="replace") for w in (w1, w2, w3)]
    assert f":{shared_port}/metrics" in served[0]
    assert all(f"cannot serve metrics on 127.0.0.1:{shared_port}" in log for log in served[1:])
