"""Child process of the SIGKILL test: runs the dunning job on Postgres and stops for ever
inside the transaction, after the reminder's row is written and before its outbox row, having
written `ready` to the marker file. Usage: crash_child.py CONNINFO TENANT_ID MARKER."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from meterline.dunning import DunningPolicy
from meterline.dunning import postgres as dunning_postgres
from meterline.dunning.postgres import PostgresDunningRepository
from meterline.postgres import open_pool
from tests.dunning.support import DAY, T0, invoice, make_kit


def main(conninfo: str, tenant_id: int, marker: Path) -> None:
    real = dunning_postgres.publish

    def stuck(conn: Any, notification: Any) -> None:
        if notification.type == "dunning.reminder":
            marker.write_text("ready")
            time.sleep(3600)
        real(conn, notification)

    dunning_postgres.publish = stuck  # type: ignore[assignment]
    policy = DunningPolicy()
    with open_pool(conninfo, max_size=1) as pool:
        kit = make_kit(PostgresDunningRepository(pool, policy), policy, tenant_id)
        kit.invoices.now["in_1"] = invoice(1)
        kit.clock_to(T0 + 3 * DAY)
        kit.dunning.run_due()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]))
