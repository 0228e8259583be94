"""The topics the worker declares before it joins its group, as the broker sees them."""

from __future__ import annotations

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from streams.app import WorkerConfig, build_app, declare_topics
from streams.topics import TopicNames

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]


async def test_changelogs_are_compacted_in_small_segments(apache_kafka: str, topic_prefix: str) -> None:
    cfg = WorkerConfig(brokers=[apache_kafka], database_url="postgresql://unused/x", topics=TopicNames(topic_prefix),
                       app_id=f"{topic_prefix}-w")
    app = build_app(cfg)
    await declare_topics(cfg, app)
    changelogs = sorted(t.changelog_topic.get_topic_name() for t in app.tables.values())
    assert changelogs == [f"{topic_prefix}-w-ecg-state-changelog", f"{topic_prefix}-w-vitals-state-changelog"]
    admin = AIOKafkaAdminClient(bootstrap_servers=apache_kafka)
    await admin.start()
    try:
        responses = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name) for name in [*changelogs, TopicNames(topic_prefix).ecg]])
    finally:
        await admin.close()
    configs = {resource[3]: {entry[0]: entry[1] for entry in resource[4]}
               for response in responses for resource in response.resources}
    for name in changelogs:
        assert configs[name]["cleanup.policy"] == "compact"
        assert configs[name]["segment.bytes"] == str(32 * 1024 * 1024)
    # Input topics keep the broker's defaults: deleted by age, not compacted.
    assert configs[TopicNames(topic_prefix).ecg]["cleanup.policy"] == "delete"
