"""After each `file` the agent writes, a line in an audit log: when, which file, and what kind of change.

The built-in apply still does the work; this runs after it (`ext.after`), and only when something changed
(an apply runs only then). AUDIT_LOG is where the lines go.
"""

from __future__ import annotations

import time
from typing import Any

AUDIT_LOG = "/var/log/converge-file-audit.log"


def register(ext: Any) -> None:
    def audit(spec: Any, change: Any, ctx: Any) -> None:
        with open(AUDIT_LOG, "a", encoding="utf-8") as log:
            when = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            log.write(f"{when} {change.action} {spec.path} by {ctx.agent_id}\n")

    ext.after("file", "apply", audit)
