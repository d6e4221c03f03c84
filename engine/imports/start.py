"""The import workflow of a machine: an ordinary desired state of one `machine_import` resource, run by the
engine's own agent (role `engine`), visible and cancellable like any other workflow.

Its step waits for the machine's pending agent, validates that agent's capability document against the
catalog with the capability test (which an extension may replace) and admits it (workflows.kinds.imports).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from common.store.imports import MachineRecord

ENGINE_ROLE = "engine"
# How long the step waits for the machine's agent to enroll before it fails (retry it once the agent runs).
WAIT_S = 900.0
# Submits a desired state (its source text and file name); returns the workflow id.
Submit = Callable[[str, str], str]


def import_state(machine: MachineRecord, wait_s: float = WAIT_S) -> dict[str, Any]:
    """The desired state that imports `machine`; the same machine gives the same text, so submitting it
    again while its workflow runs returns that workflow."""
    return {
        "apiVersion": "converge/v1",
        "kind": "DesiredState",
        "metadata": {"name": f"import-{machine.name}"},
        "resources": [
            {
                "kind": "machine_import",
                "name": machine.name,
                "role": ENGINE_ROLE,
                "spec": {
                    "machine": machine.name,
                    "source": machine.source,
                    "catalog": machine.catalog,
                    "wait_s": wait_s,
                },
            }
        ],
    }


def start_import(submit: Submit, machine: MachineRecord, wait_s: float = WAIT_S) -> str:
    """Starts (or finds) the import workflow of `machine`; its workflow id."""
    source = json.dumps(import_state(machine, wait_s), indent=2, sort_keys=True)
    return submit(source, f"<import of {machine.name}>")
