"""The reporter: usage to Stripe every hour and at period end, nightly reconciliation, and the
finance API and pages. See README.md."""
