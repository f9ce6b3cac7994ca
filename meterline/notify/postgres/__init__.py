"""The outbound webhooks' Postgres repositories: endpoints and secrets, deliveries and attempts."""
