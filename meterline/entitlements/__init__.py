"""Entitlements: the pure decision engine, its repositories and caches; see README.md here."""

from meterline.entitlements.cache import CustomerCache
from meterline.entitlements.decide import (
    Evaluation,
    PlanChoice,
    Terms,
    choose_plan,
    decide,
    evaluate,
    feature_terms,
    usage_period,
)
from meterline.entitlements.model import (
    GRANT_KINDS,
    SUBSCRIPTION_SOURCES,
    SUBSCRIPTION_STATUSES,
    Customer,
    Decision,
    Grant,
    PaymentState,
    Reason,
    Subscription,
)
from meterline.entitlements.periods import (
    Period,
    add_months,
    billing_period,
    calendar_period,
    iso,
)
from meterline.entitlements.postgres import (
    PostgresCustomerRepository,
    PostgresGrantRepository,
    PostgresSubscriptionRepository,
)
from meterline.entitlements.postgres.answers import PostgresAnswerStore
from meterline.entitlements.repository import (
    AnswerStore,
    CustomerRepository,
    GrantRepository,
    MemoryAnswerStore,
    MemoryCustomerRepository,
    MemoryGrantRepository,
    MemorySubscriptionRepository,
    NewGrant,
    SubscriptionRepository,
    check_grant,
)
from meterline.entitlements.service import (
    EntitlementService,
    PlanData,
    Publisher,
    ServiceOptions,
)
from meterline.entitlements.usage_reader import FallbackUsage, RollupUsage, UsageReader, ViewUsage

__all__ = [
    "GRANT_KINDS",
    "SUBSCRIPTION_SOURCES",
    "SUBSCRIPTION_STATUSES",
    "AnswerStore",
    "Customer",
    "CustomerCache",
    "CustomerRepository",
    "Decision",
    "EntitlementService",
    "Evaluation",
    "FallbackUsage",
    "Grant",
    "GrantRepository",
    "MemoryAnswerStore",
    "MemoryCustomerRepository",
    "MemoryGrantRepository",
    "MemorySubscriptionRepository",
    "NewGrant",
    "PaymentState",
    "Period",
    "PlanChoice",
    "PlanData",
    "PostgresAnswerStore",
    "PostgresCustomerRepository",
    "PostgresGrantRepository",
    "PostgresSubscriptionRepository",
    "Publisher",
    "Reason",
    "RollupUsage",
    "ServiceOptions",
    "Subscription",
    "SubscriptionRepository",
    "Terms",
    "UsageReader",
    "ViewUsage",
    "add_months",
    "billing_period",
    "calendar_period",
    "check_grant",
    "choose_plan",
    "decide",
    "evaluate",
    "feature_terms",
    "iso",
    "usage_period",
]
