"""The aggregator service: Kafka usage events into Postgres rollups and the Redis view."""
