"""The agents' Redis users on every data node behind Sentinel (what to copy: engine.acl_rules).

The engine mirrors them after each admission and revocation (`mirror`), and, while it holds the singleton
duties, every `MIRROR_EVERY_S` (`Mirror`), so that a replica that was down at a grant, or one added later,
catches up before a failover makes it the primary. On a broker URL that is not a sentinel URL there is one
node, and nothing to do.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import redis

from common import sentinel
from common.redisclient import data_nodes, node_client
from engine import acl_rules

log = logging.getLogger("converge.engine")

MIRROR_EVERY_S = 5.0
TIMEOUT_S = 2.0


def _listed(client: redis.Redis) -> list[str]:
    return [line.decode() if isinstance(line, bytes) else str(line) for line in client.acl_list()]


def mirror(broker_url: str) -> dict[str, str]:
    """Make every replica's agents' users the primary's, as the sentinels list the nodes now: by replica
    (`host:port`), what was done or why not. A replica that cannot be reached is skipped (the next pass
    catches it up); raises redis.RedisError only when the sentinels or the primary cannot be reached."""
    if not sentinel.is_sentinel(broker_url):
        return {}
    nodes = data_nodes(broker_url, TIMEOUT_S)
    options = {"socket_timeout": TIMEOUT_S, "socket_connect_timeout": TIMEOUT_S}
    primary = node_client(broker_url, nodes[0], **options)
    try:
        wanted = acl_rules.agent_users(_listed(primary))
    finally:
        primary.close()
    done: dict[str, str] = {}
    for node in nodes[1:]:
        where = f"{node[0]}:{node[1]}"
        client = node_client(broker_url, node, **options)
        try:
            todo = acl_rules.changes(wanted, acl_rules.agent_users(_listed(client)))
            for name, rules in todo.set.items():
                client.execute_command(*acl_rules.setuser_args(name, rules))  # type: ignore[no-untyped-call]
            if todo.delete:
                client.execute_command("ACL", "DELUSER", *todo.delete)  # type: ignore[no-untyped-call]
            done[where] = f"{len(todo.set)} set, {len(todo.delete)} deleted"
            if todo:
                log.info("agents' Redis users on replica %s: %s", where, done[where])
        except redis.RedisError as exc:
            done[where] = f"not reached: {exc}"
            log.warning(
                "cannot copy the agents' Redis users to replica %s (%s): again in a moment", where, exc
            )
        finally:
            client.close()
    return done


def mirror_now(broker_url: str) -> None:
    """`mirror`, logging instead of raising: an admission or a revocation on the primary stands, and the
    duty's next pass copies it."""
    try:
        mirror(broker_url)
    except (redis.RedisError, OSError) as exc:
        log.warning(
            "cannot copy the agents' Redis users to the replicas now (%s): the engine tries again", exc
        )


class Mirror:
    """`mirror` every `every_s` while `leading()` (this engine holds the duties); `run` until `stop`."""

    def __init__(self, broker_url: str, leading: Callable[[], bool], every_s: float = MIRROR_EVERY_S) -> None:
        self.broker_url = broker_url
        self.leading = leading
        self.every_s = every_s
        self._stop = threading.Event()

    def run(self) -> None:
        if not sentinel.is_sentinel(self.broker_url):
            return
        while not self._stop.wait(self.every_s):
            if self.leading():
                mirror_now(self.broker_url)

    def stop(self) -> None:
        self._stop.set()
