"""The aggregator's consumer: `PositionedConsumer`, handing over confluent-kafka's messages as
they are rather than one `Record` per message (building those cost as much as decoding)."""

from __future__ import annotations

from confluent_kafka import KafkaError, Message

from meterline.kafka.consumer import KafkaFailure, PositionedConsumer


class MessageConsumer(PositionedConsumer):
    def poll_messages(self, max_records: int, timeout_s: float) -> list[Message]:
        """Up to `max_records` messages, waiting at most `timeout_s` for the first. Partition
        EOFs are dropped; any other error raises KafkaFailure. Callbacks as in `poll()`."""
        messages: list[Message] = self._consumer.consume(max_records, timeout_s)
        if any(map(Message.error, messages)):  # rare: checked one by one only then
            messages = [m for m in messages if _routine(m)]
        return messages


def _routine(message: Message) -> bool:
    """False for a partition EOF; raises on any other error; True for a message."""
    err = message.error()
    if err is None:
        return True
    if err.code() == KafkaError._PARTITION_EOF:
        return False
    raise KafkaFailure(str(err))
