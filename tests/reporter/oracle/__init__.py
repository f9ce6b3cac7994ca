"""The money oracle: a seeded simulation of customer-periods through Postgres, the aggregator's
writer, the reporter and the Stripe emulator, judged by an independent calculator."""
