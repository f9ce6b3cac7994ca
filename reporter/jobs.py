"""One-shot jobs: `python -m reporter.jobs push` and `python -m reporter.jobs reconcile [--date D]`.

`meterline report run` and `meterline reconcile run` run these. `reconcile` without `--date` is
the nightly run: yesterday and every earlier day touched since the last one (the production
CronJob).

Exit codes: 0 done, 1 done but incomplete (Stripe unavailable: rows left pending,
or a tenant's reconciliation failed), 2 bad settings or arguments.
"""

from __future__ import annotations

import argparse
import sys
from datetime import date, timedelta

from meterline.errors import ConfigError
from meterline.settings import DatabaseSettings, StripeSettings, load_section
from reporter.service import Reporter, build
from reporter.settings import ReporterSettings


def push(reporter: Reporter) -> int:
    report = reporter.push()
    print(
        f"push {report.status}: {report.slots} new revision(s), {report.delivered} delivered, "
        f"{report.duplicates} already held by Stripe, {report.resent} resent after a crash, "
        f"{report.rejected} rejected, {report.too_late} too late, "
        f"{report.left_pending} left pending"
    )
    for error in report.errors:
        print(f"  stripe: {error}", file=sys.stderr)
    return 0 if report.status in ("ok", "skipped") else 1


def reconcile(reporter: Reporter, day: date, nightly: bool = False) -> int:
    """One day, or (`nightly`) the day and every earlier day touched since the last night."""
    results = reporter.reconcile_nightly(day) if nightly else reporter.reconcile(day, "manual")
    if not results:
        print(f"nothing to reconcile for {day}: its hours have not settled in Stripe yet")
        return 0
    failed = 0
    for r in results:
        run = next(x for x in reporter.store.runs(r.tenant_id, len(results)) if x.id == r.run_id)
        failed += run.status == "failed"
        print(
            f"tenant {r.tenant_id} {r.window[0].date()} run {r.run_id} {run.status}: "
            f"{r.hours_checked} hour(s) checked, "
            f"{len(r.discrepancies)} discrepancy(ies), {len(r.opened)} new alert(s)"
        )
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="reporter.jobs")
    parser.add_argument("job", choices=("push", "reconcile"))
    parser.add_argument("--date", type=date.fromisoformat, default=None, help="UTC day, YYYY-MM-DD")
    args = parser.parse_args(argv)
    try:
        settings = load_section(ReporterSettings)
        reporter = build(
            load_section(DatabaseSettings), load_section(StripeSettings), settings, pool_size=4
        )
    except ConfigError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    try:
        if args.job == "push":
            return push(reporter)
        if args.date is not None:
            return reconcile(reporter, args.date)
        return reconcile(reporter, reporter.clock.now().date() - timedelta(days=1), nightly=True)
    finally:
        reporter.close()


if __name__ == "__main__":
    sys.exit(main())
