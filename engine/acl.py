"""Each agent's own Redis user: what an agent of some roles may touch in Redis, and nothing more.

The engine (Redis's admin) creates the user when it admits an agent and deletes it when it revokes one,
closing its connections at once. The rules follow Celery's and kombu's key layout on Redis:

Isolated, per agent:
- the queues: its roles' queues (`converge.role.<role>` and kombu's priority lists beside it) and its own
  (`converge.agent.<id>`); an agent of role A can neither read nor write role B's queue, nor another
  agent's own queue;
- the messages it took and has not acknowledged: kombu keeps them in `unacked`, `unacked_index` and
  `unacked_mutex`, which the agents name after themselves (`common.names.unacked_keys`), so that one
  agent cannot read the steps in flight on another;
- its heartbeat key, and the leadership lease and epoch of its roles only.

Shared, and so not isolated (kombu's and Celery's layout give no way to split them):
- the status stream: an agent appends to it, from the script that claims a step too, and Redis checks the
  keys of a script for reading and writing both (a write-only `%W~` rule refuses the script), so an agent
  can read every agent's reports;
- the agents' announcements hash (one field per agent; Redis ACLs do not reach fields);
- the claim, cancel and attempt keys of steps, named by step id (not by role): an agent can read them, and
  claim an attempt of another role's step, which keeps that step from starting until the claim's TTL;
- kombu's bindings (`_kombu.binding*`) and Celery's pub/sub channels: task events and remote control
  (Flower). An agent may subscribe to the task events, which name every step's workflow and resource;
  agents that must not see each other's steps run with task events off (`task_events = false`).
"""

from __future__ import annotations

import secrets
from urllib.parse import quote, urlsplit

import redis

from common import names, sentinel

USER_PREFIX = "converge-agent-"
# kombu's separator between a queue's name and its priority (kombu.transport.redis.Channel.sep).
PRIORITY_SEP = "\x06\x16"
# What an agent's Redis client and Celery worker need: data commands and scripts, not administration
# (no ACL, CONFIG, KEYS, FLUSHALL, CLIENT KILL, DEBUG, ...).
CATEGORIES = ["+@all", "-@admin", "-@dangerous"]


def user_name(agent_id: str) -> str:
    return USER_PREFIX + agent_id


def queue_patterns(queue: str) -> list[str]:
    """A queue's list and kombu's priority lists beside it (`<queue>\\x06\\x16<priority>`)."""
    return [queue, queue + PRIORITY_SEP + "*"]


def agent_keys(agent_id: str, roles: list[str]) -> list[str]:
    """The key patterns an agent's user may read and write (its commands: CATEGORIES; channels: any)."""
    keys = [
        names.agent_alive_key(agent_id),
        names.agent_refused_key(agent_id),
        names.AGENTS_HASH,
        "converge:claim:*",
        "converge:cancel:*",
        "converge:attempt:*",
        "converge:plan:*",
        names.STATUS_STREAM,
        *names.unacked_keys(agent_id).values(),
        *queue_patterns(names.agent_queue(agent_id)),
        "_kombu.binding*",  # kombu's bindings, their deadlines and permanent bindings
        # Celery's remote control (Flower's inspect): the worker's mailbox and the replies it sends
        f"{agent_id}@*.celery.pidbox*",
        "*.reply.celery.pidbox*",
    ]
    for role in sorted(roles):
        keys += [names.leader_key(role), names.epoch_key(role), *queue_patterns(names.role_queue(role))]
    return keys


def grant(client: redis.Redis, agent_id: str, roles: list[str], password: str | None = None) -> str:
    """Create (or reset) the agent's user with a new password; returns the password."""
    password = password or secrets.token_urlsafe(32)
    client.acl_setuser(
        user_name(agent_id),
        enabled=True,
        reset=True,
        passwords=[f"+{password}"],
        categories=CATEGORIES,
        keys=agent_keys(agent_id, roles),
        channels=["*"],
    )
    return password


def revoke(client: redis.Redis, agent_id: str) -> None:
    """Delete the agent's user and close its connections: it can do nothing more on Redis from now on."""
    client.acl_deluser(user_name(agent_id))  # Redis closes the user's connections


def url_for(broker_url: str, agent_id: str, password: str) -> str:
    """The broker URL an agent uses: the engine's, with the agent's user and password. On a sentinel URL
    they are the data nodes' credentials; the sentinels' own (in the query) stay as they are. The rest of
    the URL stays too: a rediss:// URL's TLS parameters name a CA file that must be at the same path on
    the agents' hosts, else `agents_broker_url` says where it is there."""
    if sentinel.is_sentinel(broker_url):
        return sentinel.parse(broker_url).with_credentials(user_name(agent_id), password).geturl()
    parts = urlsplit(broker_url)
    host = parts.netloc.rpartition("@")[2]
    userinfo = f"{quote(user_name(agent_id), safe='')}:{quote(password, safe='')}"
    # the path and the query stay: the database, and on rediss:// the CA and how the certificate is checked
    return parts._replace(netloc=f"{userinfo}@{host}").geturl()
