"""Where each changelog may be trimmed, committed as a consumer group's offsets.

A refreshed changelog partition (``worker/checkpoint.py``) holds nothing below its mark that a
newer record does not replace. The worker commits the marks as the offsets of a consumer group
of their own (``<app id>-changelog-refresh``), on the changelog topics: the embedded Kafka's
retention (``ownercare/retention.py``) trims every topic a group commits on below the group's
offset, so the changelogs need no rule of their own there, and on Apache Kafka, whose
compaction does the same work, the group is harmless. Only a higher mark is committed: a
commit replaces the group's offset, it does not take the larger one.
"""

from __future__ import annotations

import logging
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

log = logging.getLogger(__name__)

GROUP_SUFFIX = "-changelog-refresh"


class ChangelogMarks:
    def __init__(self, bootstrap: str, app_id: str) -> None:
        self.bootstrap = bootstrap
        self.group = app_id + GROUP_SUFFIX
        self.tables: list[tuple[str, Any]] = []  # (changelog topic, CheckpointedTable)
        self.committed: dict[TopicPartition, int] = {}
        self._consumer: AIOKafkaConsumer | None = None

    def watch(self, changelog_topic: str, states: Any) -> None:
        self.tables.append((changelog_topic, states))

    def due(self) -> dict[TopicPartition, int]:
        """The marks higher than what this worker committed for them."""
        due: dict[TopicPartition, int] = {}
        for topic, states in self.tables:
            for partition, mark in states.refreshed().items():
                tp = TopicPartition(topic, partition)
                if mark > self.committed.get(tp, -1):
                    due[tp] = mark
        return due

    async def commit(self) -> int:
        """Commit the marks due; returns how many were committed."""
        due = self.due()
        if not due:
            return 0
        if self._consumer is None:
            self._consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap,
                                              group_id=self.group, enable_auto_commit=False)
            await self._consumer.start()
        self._consumer.assign(list(due))  # a commit names assigned partitions only
        await self._consumer.commit(due)
        self.committed.update(due)
        log.info("changelog_marks_committed %s",
                 " ".join(f"{tp.topic}/{tp.partition}={mark}" for tp, mark in sorted(due.items())))
        return len(due)

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
