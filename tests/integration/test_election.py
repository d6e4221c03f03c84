"""Leadership leases on a real Redis: one leader per role at a time, a new epoch at each change of holder."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from agents.outbox import Outbox
from agents.reporter import Claim, Reporter
from common import names
from common.election import Election
from common.localredis import LocalRedis
from common.models import StepMessage
from tests.integration.conftest import wait_for

ROLE = "web"


@pytest.fixture
def client(redis_server: LocalRedis) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(redis_server.url)
    c.delete(names.leader_key(ROLE), names.epoch_key(ROLE))
    yield c
    c.close()


def contender(client: redis.Redis, agent: str, ttl_s: float = 1.0, deadline_s: float = 0.6) -> Election:
    return Election(client, [ROLE], names.lease_holder(agent, "run"), ttl_s, deadline_s)


def test_the_first_agent_leads_and_the_others_are_backups_that_see_it_and_its_epoch(
    client: redis.Redis,
) -> None:
    a, b = contender(client, "a"), contender(client, "b")

    first, second = a.campaign()[ROLE], b.campaign()[ROLE]

    assert (first.leader, first.epoch) == (True, 1)
    assert (second.leader, second.epoch, names.lease_agent(second.holder)) == (False, 1, "a")
    assert a.leading() == {ROLE: 1} and b.leading() == {}
    assert a.campaign()[ROLE].epoch == 1, "a renewal keeps the epoch"


def test_a_lease_its_holder_stops_renewing_passes_to_a_backup_at_the_next_epoch(client: redis.Redis) -> None:
    a, b = (
        contender(client, "a", ttl_s=0.4, deadline_s=0.25),
        contender(client, "b", ttl_s=0.4, deadline_s=0.25),
    )
    a.campaign()

    taken = wait_for(lambda: (s := b.campaign()[ROLE]).leader and s, 5, "b to take the lease")

    assert taken.epoch == 2
    after = a.campaign()[ROLE]
    assert (after.leader, names.lease_agent(after.holder)) == (False, "b"), "the old holder is a backup now"
    assert a.leading() == {}


def test_a_released_lease_is_taken_at_once_and_only_its_holder_can_release_it(client: redis.Redis) -> None:
    a, b = contender(client, "a"), contender(client, "b")
    a.campaign()
    b.release()  # not b's to release
    assert not b.campaign()[ROLE].leader

    a.release()

    assert b.campaign()[ROLE].leader and b.leading() == {ROLE: 2}


def test_a_paused_holder_stops_believing_it_leads_at_its_deadline_before_anyone_can_take_over(
    client: redis.Redis,
) -> None:
    a = contender(client, "a", ttl_s=0.5, deadline_s=0.3)
    a.campaign()
    wait_for(lambda: not a.leading(), 2, "the renew deadline to pass")

    # the lease itself still runs: nobody else could have taken it yet
    assert client.pttl(names.leader_key(ROLE)) > 0


class Contender(threading.Thread):
    """An agent's elector in a thread: campaigns every `every_s`, unless frozen (a SIGSTOP, a long pause),
    and records each moment it would act as leader, with the epoch it would act under."""

    def __init__(self, url: str, agent: str, ttl_s: float, deadline_s: float, every_s: float) -> None:
        super().__init__(daemon=True)
        self.agent = agent
        self.election = Election(
            redis.Redis.from_url(url), [ROLE], names.lease_holder(agent, "run"), ttl_s, deadline_s
        )
        self.every_s = every_s
        self.frozen_until = 0.0
        self.beliefs: list[tuple[int, float]] = []
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def believe(self) -> None:
        now = time.monotonic()  # the moment it would act: woken from a pause, it asks its deadline first
        self.beliefs += [(epoch, now) for epoch in self.election.leading().values()]

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                if time.monotonic() < self.frozen_until:
                    time.sleep(0.005)
                    continue
                self.believe()
                self.election.campaign()
                self.believe()
                time.sleep(self.every_s)
        except BaseException as exc:  # surfaced by the test
            self.error = exc


def epoch_now(client: redis.Redis) -> int:
    return int(client.get(names.epoch_key(ROLE)) or 0)


def test_never_two_leaders_at_one_epoch_over_50_forced_failovers(
    client: redis.Redis, redis_server: LocalRedis
) -> None:
    ttl_s = 0.2
    contenders = {a: Contender(redis_server.url, a, ttl_s, 0.12, 0.02) for a in ("a", "b", "c")}
    for c in contenders.values():
        c.start()
    try:
        for _ in range(50):
            before = wait_for(lambda: epoch_now(client), 5, "a leader")
            holder = names.lease_agent(client.get(names.leader_key(ROLE)))
            assert holder is not None
            contenders[holder].frozen_until = time.monotonic() + ttl_s * 1.5  # a backup takes over
            wait_for(lambda b=before: epoch_now(client) > b, 5, "the failover")  # type: ignore[misc]
    finally:
        for c in contenders.values():
            c.stop.set()
            c.join(timeout=5)
    assert all(c.error is None for c in contenders.values())

    spans: dict[int, list[tuple[str, float, float]]] = defaultdict(list)
    for c in contenders.values():
        for epoch in {e for e, _ in c.beliefs}:
            times = [t for e, t in c.beliefs if e == epoch]
            spans[epoch].append((c.agent, min(times), max(times)))
    assert len(spans) >= 50
    assert all(len(holders) == 1 for holders in spans.values()), "two leaders at one epoch"
    ordered = sorted((span for holders in spans.values() for span in holders), key=lambda span: span[1])
    for (prev, _, prev_end), (cur, cur_start, _) in itertools.pairwise(ordered):
        assert prev_end < cur_start, f"{prev} still acted as leader when {cur} did"


def test_an_agent_that_does_not_hold_a_roles_lease_cannot_claim_its_steps_but_can_claim_its_own(
    client: redis.Redis, redis_server: LocalRedis, tmp_path: Path
) -> None:
    def message(step_id: str, scope: str | None = None) -> StepMessage:
        return StepMessage(
            workflow_id="w",
            step_id=step_id,
            resource="r",
            kind="file",
            name="n",
            role=ROLE,
            scope=scope,
            spec={},
        )

    outbox = Outbox(tmp_path / "outbox.db", "run")
    leader = Reporter(redis_server.url, "a", outbox, b"k" * 32, names.lease_holder("a", "run"))
    backup = Reporter(redis_server.url, "b", outbox, b"k" * 32, names.lease_holder("b", "run"))
    contender(client, "a").campaign()

    assert backup.claim_and_start(message("w.0"), 60) == (Claim.NOT_LEADER, 0)
    own = backup.claim_and_start(message("w.1", scope="b"), 60)
    assert own == (Claim.OURS, 0), "its own steps need no lease, and no epoch fences them"
    claimed = leader.claim_and_start(message("w.0"), 60)

    epoch = int(client.get(names.epoch_key(ROLE)) or 0)
    assert epoch >= 1 and claimed == (Claim.OURS, epoch)
    # the engine sent the step at epoch 0: the `started` event carries the epoch the attempt runs under
    (_, fields), *_ = client.xrevrange(names.STATUS_STREAM, count=1)
    started = json.loads(fields[b"e"])
    assert (started["step_id"], started["state"], started["epoch"], started["attempt"]) == (
        "w.0",
        "started",
        epoch,
        1,
    )
