"""Sentinel broker URLs alone: parsing, what Celery and kombu are given, redaction and settings' messages."""

from __future__ import annotations

import pytest

from common import sentinel
from common.celery_app import SENTINEL_TRANSPORT, make_app
from common.errors import BadInput
from common.settings import check_broker_url, load_settings, redact
from engine import acl

URL = "sentinel://:admin@10.0.0.1:26379;sentinel://10.0.0.2;sentinel://10.0.0.3:26380/2?master=converge"


def test_a_sentinel_url_names_every_sentinel_the_master_the_database_and_the_data_nodes_password() -> None:
    parsed = sentinel.parse(URL)

    assert parsed.sentinels == (("10.0.0.1", 26379), ("10.0.0.2", 26379), ("10.0.0.3", 26380))
    assert (parsed.master, parsed.db, parsed.username, parsed.password) == ("converge", 2, None, "admin")
    assert parsed.sentinel_kwargs() == {}


def test_the_sentinels_own_credentials_come_from_the_query_and_stay_apart_from_the_data_nodes() -> None:
    parsed = sentinel.parse(
        "sentinel://app:p%40ss@h1;sentinel://h2/0?master=m&sentinel_username=watch&sentinel_password=s3"
    )

    assert (parsed.username, parsed.password) == ("app", "p@ss")
    assert parsed.sentinel_kwargs() == {"username": "watch", "password": "s3"}
    assert parsed.transport_options()["sentinel_kwargs"] == {"username": "watch", "password": "s3"}


def test_celery_gets_one_sentinel_address_and_the_transport_every_sentinel() -> None:
    app = make_app(URL)

    assert app.conf.broker_url == "sentinel://:admin@10.0.0.1:26379/2"
    assert ";" not in app.conf.broker_url, "Celery would take the other sentinels for failover brokers"
    options = app.conf.broker_transport_options
    assert options["master_name"] == "converge"
    assert options["sentinels"] == [["10.0.0.1", 26379], ["10.0.0.2", 26379], ["10.0.0.3", 26380]]
    assert app.conf.broker_transport == SENTINEL_TRANSPORT
    assert make_app("redis://127.0.0.1:6379/0").conf.broker_transport is None


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("sentinel://h1;sentinel://h2/0", "names no master: add ?master=NAME"),
        ("sentinel://:pw@/0?master=m", "part 1 names no sentinel host"),
        ("sentinel://h1;redis://h2?master=m", "part 2 is not a sentinel:// address"),
        ("sentinel://h1:port?master=m", "the port must be a number"),
        ("sentinel://h1/zero?master=m", "the database 'zero' must be a number"),
        ("sentinel://h1?master=m&sentinel_pasword=x", "unknown parameter 'sentinel_pasword'"),
    ],
)
def test_a_malformed_sentinel_url_is_refused_saying_what_is_wrong(url: str, reason: str) -> None:
    with pytest.raises(ValueError, match="is not a sentinel URL") as raised:
        check_broker_url(url)

    assert reason in str(raised.value)
    assert "pw" not in str(raised.value).replace("PASSWORD", "")


def test_settings_take_a_sentinel_url_and_name_the_setting_of_a_bad_one() -> None:
    assert load_settings(broker_url=URL).broker_url == URL
    with pytest.raises(BadInput, match=r"--broker-url: 'sentinel://:\*\*\*@h1/0' is not a sentinel URL"):
        load_settings(broker_url="sentinel://:secret@h1/0")


def test_redaction_hides_the_passwords_of_every_part_and_of_the_query() -> None:
    url = (
        "sentinel://app:one@h1:26379;sentinel://:two@h2;sentinel://h3/0"
        "?master=m&sentinel_username=watch&sentinel_password=three"
    )

    shown = redact(url)

    for secret in ("one", "two", "three"):
        assert secret not in shown, shown
    assert shown == (
        "sentinel://app:***@h1:26379;sentinel://:***@h2;sentinel://h3/0"
        "?master=m&sentinel_username=watch&sentinel_password=***"
    )
    assert redact("sentinel://h1;sentinel://h2/0?master=m") == "sentinel://h1;sentinel://h2/0?master=m"


def test_an_agents_sentinel_url_carries_its_user_on_the_data_nodes_and_the_sentinels_credentials() -> None:
    url = "sentinel://:admin@h1;sentinel://h2:26380/1?master=m&sentinel_password=s"

    given = acl.url_for(url, "web-1", "p/w")

    assert "admin" not in given
    parsed = sentinel.parse(given)
    assert (parsed.username, parsed.password) == ("converge-agent-web-1", "p/w")
    assert parsed.sentinels == (("h1", 26379), ("h2", 26380))
    assert (parsed.master, parsed.db, parsed.sentinel_password) == ("m", 1, "s")
    assert check_broker_url(given) == given
