"""Kafka adapter: the only place that imports confluent_kafka."""

from meterline.kafka.admin import ensure_topics
from meterline.kafka.config import consumer_config, producer_config

__all__ = ["consumer_config", "ensure_topics", "producer_config"]
