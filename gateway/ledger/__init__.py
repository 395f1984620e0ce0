"""The ledger: one record per request, hourly rollups in step, retention, reports, outcomes.

The records are the `usage` table, written by the group-commit writer (`appliance.writer`);
`LedgerChain` hash-chains them as they are inserted, and `rollup_hook` keeps `rollups` and
`rollup_tags` in step inside the same transactions.
"""

from gateway.ledger.chain import LedgerChain
from gateway.ledger.outcomes import add_outcome, list_outcomes
from gateway.ledger.queries import spent, spent_by
from gateway.ledger.reports import roi_report, spend_report, to_csv
from gateway.ledger.retention import Retention, prune, start_retention
from gateway.ledger.rollups import rebuild_rollups, rollup_hook

__all__ = [
    "LedgerChain",
    "Retention",
    "add_outcome",
    "list_outcomes",
    "prune",
    "rebuild_rollups",
    "roi_report",
    "rollup_hook",
    "spend_report",
    "spent",
    "spent_by",
    "start_retention",
    "to_csv",
]
