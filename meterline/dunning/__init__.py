"""Dunning: the sequence of notices and the downgrade after an invoice's payment fails."""

from meterline.dunning.model import DunningPolicy, InvoiceFacts, Sequence
from meterline.dunning.repository import DunningRepository, MemoryDunningRepository
from meterline.dunning.service import Dunning, DunningPorts, fallback_plan
from meterline.dunning.settings import DunningSettings
from meterline.dunning.webhooks import DunningWebhooks

__all__ = [
    "Dunning",
    "DunningPolicy",
    "DunningPorts",
    "DunningRepository",
    "DunningSettings",
    "DunningWebhooks",
    "InvoiceFacts",
    "MemoryDunningRepository",
    "Sequence",
    "fallback_plan",
]
