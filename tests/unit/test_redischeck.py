import logging

from engine.redischeck import eviction_problem


def test_noeviction_is_fine() -> None:
    assert eviction_problem("noeviction") is None


def test_any_other_policy_warns_why_and_how_to_fix() -> None:
    problem = eviction_problem("allkeys-lru")
    assert problem is not None
    level, message = problem
    assert level == logging.WARNING
    assert "'allkeys-lru'" in message
    assert "lost" in message
    assert "CONFIG SET maxmemory-policy noeviction" in message


def test_a_refused_config_says_it_could_not_be_checked() -> None:
    problem = eviction_problem(None, "NOPERM this user has no permissions to run the 'config' command")
    assert problem is not None
    level, message = problem
    assert level == logging.INFO
    assert message.startswith("could not check Redis's maxmemory-policy (NOPERM")
