"""Topic administration: idempotent creation, and what tells one incarnation of a topic from
another (a broker that lost its topics, or a topic deleted and created again)."""

from __future__ import annotations

from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    TopicCollection,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from meterline.errors import ConfigError, Unavailable


def ensure_topics(
    bootstrap: str, topics: list[str], partitions: int, timeout: float = 15.0
) -> None:
    """Create each missing topic with `partitions` partitions; ConfigError if the broker fails."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    try:
        existing = set(admin.list_topics(timeout=timeout).topics)
    except KafkaException as exc:
        raise ConfigError(f"cannot reach Kafka at {bootstrap}: {exc}") from None
    wanted = [
        NewTopic(t, num_partitions=partitions, replication_factor=1)
        for t in topics
        if t not in existing
    ]
    if not wanted:
        return
    for topic, future in admin.create_topics(wanted, operation_timeout=timeout).items():
        try:
            future.result(timeout)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise ConfigError(f"cannot create topic {topic}: {exc}") from None


_NO_TOPIC_ID = {"", "None", "AAAAAAAAAAAAAAAAAAAAAA"}  # librdkafka's forms of "no id"


class TopicIncarnation:
    """What identifies the current incarnation of `topic`: its topic id (`id:<id>`), which
    changes when the topic is deleted and created again or a memory-only broker starts empty;
    else, for a broker that reports no topic ids, its cluster id (`cluster:<id>`), which tells
    one broker's log from another's but not a topic recreated on the same cluster.

    One admin client, kept open; each call is one round trip to the broker. Not thread-safe."""

    def __init__(self, bootstrap: str, topic: str, timeout: float = 10.0) -> None:
        self._admin = AdminClient({"bootstrap.servers": bootstrap})
        self._topic, self._timeout = topic, timeout

    def __call__(self) -> str:
        """Raises Unavailable when the broker does not answer or does not know the topic."""
        topic, timeout = self._topic, self._timeout
        try:
            described = self._admin.describe_topics(TopicCollection([topic]))[topic]
            topic_id = described.result(timeout).topic_id
            if topic_id is not None and str(topic_id) not in _NO_TOPIC_ID:
                return f"id:{topic_id}"
            return f"cluster:{self._admin.describe_cluster().result(timeout).cluster_id}"
        except KafkaException as exc:
            raise Unavailable(f"cannot describe topic {topic}: {exc}") from None


def log_bounds(
    bootstrap: str, topic: str, partition: int, timeout: float = 10.0
) -> tuple[int, int]:
    """The partition's first and next offsets (log start, log end). Raises Unavailable."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "meterline-admin"})
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout)
        return int(low), int(high)
    except KafkaException as exc:
        raise Unavailable(f"cannot read the bounds of {topic}[{partition}]: {exc}") from None
    finally:
        consumer.close()


def group_offsets(
    bootstrap: str, group: str, topic: str, partitions: list[int], timeout: float = 10.0
) -> dict[int, int | None]:
    """The next offsets `group` has committed to Kafka for each partition (None: none yet),
    as lag monitors see them. Raises Unavailable."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        tps = [TopicPartition(topic, p) for p in partitions]
        found = consumer.committed(tps, timeout=timeout)
    except KafkaException as exc:
        raise Unavailable(f"cannot read the offsets of group {group}: {exc}") from None
    finally:
        consumer.close()
    return {tp.partition: (tp.offset if tp.offset >= 0 else None) for tp in found}
