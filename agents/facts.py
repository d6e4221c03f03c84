"""The facts an agent gathers of its host, which templates use as `facts.NAME` (workflows.templates).

Gathered once, when the agent's first step needs them: a fact is what the host is, and does not change
while the agent runs. Two agents on one machine share its hostname, OS and addresses: `agent_id` and
`roles` are what tells them apart.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

OS_RELEASE = Path("/etc/os-release")


def gather(agent_id: str, roles: list[str] | set[str]) -> dict[str, Any]:
    """hostname, fqdn, agent_id, roles (sorted), os (id, version_id, pretty_name) and addresses."""
    hostname = socket.gethostname()
    return {
        "hostname": hostname,
        "fqdn": socket.getfqdn(),
        "agent_id": agent_id,
        "roles": sorted(roles),
        "os": os_release(),
        "addresses": addresses(hostname),
    }


def os_release(path: Path = OS_RELEASE) -> dict[str, str]:
    """`id`, `version_id` and `pretty_name` of /etc/os-release (empty strings where it has none)."""
    found = {"id": "", "version_id": "", "pretty_name": ""}
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return found
    for line in text.splitlines():
        key, equals, value = line.partition("=")
        if equals and key.strip().lower() in found:
            found[key.strip().lower()] = value.strip().strip('"').strip("'")
    return found


def addresses(hostname: str) -> list[str]:
    """The host's IP addresses that its name resolves to, loopback left out (none if it does not resolve)."""
    try:
        infos = socket.getaddrinfo(hostname, None)
    except OSError:
        return []
    found = {str(info[4][0]) for info in infos}
    return sorted(a for a in found if not a.startswith("127.") and a != "::1")
