"""Outbound webhooks (Standard Webhooks): the outbox, endpoints, signing and the dispatcher."""
