"""The audit trail as a whole: the admin trail and the ledger, both hash-chained.

- `verify`: walk both chains and name the first bad record of each;
- `heads`: both chains' heads, logged to the system log and kept for `verify`;
- `search`: ledger records and admin events by filter, and one request's timeline.

The chains themselves are written where their records are: `gateway.tenancy.audit` (admin
changes, in each change's transaction) and `gateway.ledger.chain` (ledger records, in the
group-commit writer's batches).
"""

from gateway.audit.heads import Head, HeadLogger, Heads
from gateway.audit.verify import Problem, Report, verify

__all__ = ["Head", "HeadLogger", "Heads", "Problem", "Report", "verify"]
