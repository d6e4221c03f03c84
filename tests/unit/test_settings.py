"""The settings loader: every bad setting is a message naming it and its source; URLs never show a password."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agents import config
from agents.config import ConfigError
from common.errors import BadInput
from common.settings import check_broker_url, load_settings, redact, split_bind


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("CONVERGE_"):
            monkeypatch.delenv(name)


def refusal(**options: object) -> str:
    with pytest.raises(BadInput) as caught:
        load_settings(**options)
    assert caught.value.exit_code == 2
    return str(caught.value)


def test_defaults_load_when_nothing_is_set() -> None:
    settings = load_settings()
    assert settings.broker_url == "redis://127.0.0.1:6379/0"
    assert settings.api_bind == "127.0.0.1:8765"


def test_options_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVERGE_BROKER_URL", "redis://env-host:6379/0")
    assert load_settings(broker_url="redis://option-host:6379/1").broker_url == "redis://option-host:6379/1"
    assert load_settings(broker_url=None).broker_url == "redis://env-host:6379/0"


def test_a_number_that_is_not_one_names_its_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVERGE_PLAN_TIMEOUT_S", "abc")
    message = refusal()
    assert "CONVERGE_PLAN_TIMEOUT_S" in message and "'abc'" in message and "number" in message


def test_a_broker_url_that_is_not_redis_names_its_option_and_the_expected_form() -> None:
    message = refusal(broker_url="foo")
    assert message.startswith("invalid setting --broker-url: 'foo' is not a Redis URL")
    assert "redis://" in message and "rediss://" in message and "unix://" in message


@pytest.mark.parametrize(
    "url",
    ["redis://127.0.0.1:6379/0", "rediss://:pw@cache.example:6380/2", "unix:///run/redis.sock", "redis://h"],
)
def test_redis_urls_of_every_supported_form_are_accepted(url: str) -> None:
    assert check_broker_url(url) == url


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://127.0.0.1:6379", "not a Redis URL"),
        ("redis://h:70000/0", "port"),
        ("redis://h:0/0", "port"),
        ("redis://h:x/0", "port"),
        ("redis://h:6379/zero", "database 'zero' must be a number"),
        ("unix://", "not a Redis URL"),
    ],
)
def test_broken_redis_urls_say_what_is_wrong(url: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        check_broker_url(url)


def test_an_api_bind_without_a_port_names_its_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVERGE_API_BIND", "localhost")
    message = refusal()
    assert "CONVERGE_API_BIND" in message and "HOST:PORT" in message and "1 to 65535" in message


@pytest.mark.parametrize("bind", ["localhost", "host:", ":8765", "host:0", "host:65536", "host:http"])
def test_api_bind_needs_a_host_and_a_port_from_1_to_65535(bind: str) -> None:
    with pytest.raises(ValueError, match="HOST:PORT"):
        split_bind(bind)


def test_api_bind_splits_into_host_and_port_ipv6_included() -> None:
    assert split_bind("127.0.0.1:8765") == ("127.0.0.1", 8765)
    assert split_bind("[::1]:80") == ("::1", 80)


def test_a_store_url_sqlalchemy_cannot_parse_is_refused_with_the_forms_it_takes() -> None:
    message = refusal(store_url="not a url")
    assert "--store-url" in message and "not a SQLAlchemy URL" in message and "sqlite:///" in message


def test_a_store_url_of_an_unknown_database_names_it() -> None:
    assert "unknown database 'nosql'" in refusal(store_url="nosql://h/db")


def test_an_engine_url_must_be_http_or_https(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVERGE_URL", "127.0.0.1:8765")
    assert "CONVERGE_URL" in refusal() and "http://" in refusal()


def test_a_log_level_must_be_a_known_one() -> None:
    assert "DEBUG, INFO" in refusal(log_level="loud")
    assert load_settings(log_level="debug").log_level == "DEBUG"


def test_every_bad_setting_is_reported_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVERGE_API_BIND", "localhost")
    message = refusal(broker_url="foo", plan_timeout_s="-1")
    assert "--broker-url" in message and "CONVERGE_API_BIND" in message and "--plan-timeout-s" in message


def test_a_password_in_a_bad_url_is_never_shown() -> None:
    message = refusal(broker_url="redis://:s3cret@h:99999/0", store_url="nosql://u:s3cret@h/db")
    assert "s3cret" not in message
    assert "redis://:***@h:99999/0" in message


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:s3cret@h:6379/0", "redis://:***@h:6379/0"),
        ("redis://user:s3cret@h/0", "redis://user:***@h/0"),
        ("postgresql+psycopg://converge:s3cret@db:5432/c", "postgresql+psycopg://converge:***@db:5432/c"),
        ("redis://user@h/0", "redis://user@h/0"),
        ("sqlite:///./.converge/converge.db", "sqlite:///./.converge/converge.db"),
        ("not a url", "not a url"),
    ],
)
def test_redact_hides_only_the_password(url: str, shown: str) -> None:
    assert redact(url) == shown


def test_the_agent_checks_its_broker_url_the_same_way(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CONVERGE_AGENT_CONFIG", str(tmp_path / "agent.toml"))
    with pytest.raises(ConfigError, match="'foo' is not a Redis URL"):
        config.load({"broker_url": "foo"})
    with pytest.raises(ConfigError, match="broker_url=foo: 'foo' is not a Redis URL"):
        config.set_values(["broker_url=foo"])
    assert not (tmp_path / "agent.toml").exists()
