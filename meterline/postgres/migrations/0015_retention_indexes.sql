-- Retention (meterline/postgres/retention.py) finds the rows past each table's horizon by the
-- column that dates them: one index per rule, so a nightly run reads what leaves, not the table.
CREATE INDEX stripe_webhook_events_received ON stripe_webhook_events (received_at);
CREATE INDEX stripe_webhook_rejects_last_seen ON stripe_webhook_rejects (last_seen);
CREATE INDEX report_boundaries_at ON report_boundaries (at);
CREATE INDEX report_contexts_since ON report_contexts (since);
CREATE INDEX report_lag_probes_sent ON report_lag_probes (sent_at);
CREATE INDEX report_ledger_slot_start ON report_ledger (slot_start) WHERE status <> 'pending';
CREATE INDEX reconciliation_alerts_resolved ON reconciliation_alerts (updated_at)
    WHERE status = 'resolved';
CREATE INDEX reconciliation_runs_started ON reconciliation_runs (started_at);
