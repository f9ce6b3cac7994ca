"""Kafka adapter: the only place that imports confluent_kafka."""

from meterline.kafka.config import consumer_config, producer_config
from meterline.kafka.admin import ensure_topics

__all__ = ["consumer_config", "ensure_topics", "producer_config"]
