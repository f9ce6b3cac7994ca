"""The ingest service: usage events over HTTP, acknowledged by Kafka; see README.md."""
