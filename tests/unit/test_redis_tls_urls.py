"""A rediss:// broker URL's TLS parameters, alone: read once, with the certificate checked by default, and
handed the same way to redis-py, kombu (the agents' transport too) and Celery; kept in an agent's URL."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from redis.connection import SSLConnection

from common import redistls
from common.celery_app import make_app
from common.redisclient import redis_client, unreachable
from common.settings import check_broker_url, redact
from engine.acl import url_for

CA = "/etc/converge/redis-ca.pem"
URL = f"rediss://:s3cr%40t@cache.example:6380/2?ssl_cert_reqs=required&ssl_ca_certs={CA}"


def test_the_tls_parameters_come_off_the_url_as_arguments_with_the_certificate_checked() -> None:
    plain, options = redistls.split(URL)

    assert plain == "rediss://:s3cr%40t@cache.example:6380/2"
    assert options == {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_ca_certs": CA, "ssl_check_hostname": True}


def test_a_rediss_url_with_no_parameters_checks_the_certificate_against_the_systems_cas() -> None:
    # kombu, given none, would connect without checking anything
    assert redistls.split("rediss://h:6380/0")[1] == {
        "ssl_cert_reqs": ssl.CERT_REQUIRED,
        "ssl_check_hostname": True,
    }


@pytest.mark.parametrize("value", ["none", "CERT_NONE", "None"])
def test_ssl_cert_reqs_none_turns_the_host_name_check_off_too(value: str) -> None:
    options = redistls.split(f"rediss://h/0?ssl_cert_reqs={value}")[1]

    assert options == {"ssl_cert_reqs": ssl.CERT_NONE, "ssl_check_hostname": False}
    assert "not checked" in redistls.describe(options)


def test_a_client_certificate_and_other_query_parameters_are_kept() -> None:
    plain, options = redistls.split(
        "rediss://h/0?ssl_certfile=/c.pem&ssl_keyfile=/c.key&ssl_check_hostname=no&x=1"
    )

    assert plain == "rediss://h/0?x=1"
    assert options["ssl_certfile"] == "/c.pem" and options["ssl_keyfile"] == "/c.key"
    assert options["ssl_check_hostname"] is False


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis://:pw@h/0?ssl_ca_certs=/ca.pem", "write rediss://"),
        ("rediss://:pw@h/0?ssl_ca_cert=/ca.pem", "unknown parameter 'ssl_ca_cert'"),
        ("rediss://:pw@h/0?ssl_cert_reqs=maybe", "expected required, optional, none"),
        ("rediss://:pw@h/0?ssl_check_hostname=perhaps", "expected true or false"),
        ("rediss://:pw@h/0?ssl_keyfile=/k.pem", "needs both"),
    ],
)
def test_a_bad_tls_parameter_is_refused_by_the_settings_without_the_password(url: str, says: str) -> None:
    with pytest.raises(ValueError, match=says) as refused:
        check_broker_url(url)
    assert "pw" not in str(refused.value).replace("ssl_", "")
    assert ":***@h" in str(refused.value)


def test_redact_hides_the_password_and_keeps_the_query() -> None:
    assert redact(URL) == f"rediss://:***@cache.example:6380/2?ssl_cert_reqs=required&ssl_ca_certs={CA}"


def test_an_agents_url_keeps_the_engines_tls_parameters_with_its_own_user() -> None:
    agent = url_for(URL, "web-1", "p/w+")

    assert (
        agent
        == f"rediss://converge-agent-web-1:p%2Fw%2B@cache.example:6380/2?ssl_cert_reqs=required&ssl_ca_certs={CA}"
    )
    assert redistls.split(agent)[1] == redistls.split(URL)[1]
    assert "p%2Fw" not in redact(agent)


def test_every_redis_py_client_gets_the_tls_parameters() -> None:
    client = redis_client(URL, socket_connect_timeout=1)
    pool = client.connection_pool

    assert pool.connection_class is SSLConnection
    assert pool.connection_kwargs["ssl_ca_certs"] == CA
    assert pool.connection_kwargs["ssl_cert_reqs"] == ssl.CERT_REQUIRED
    assert pool.connection_kwargs["password"] == "s3cr@t"
    client.close()


@pytest.mark.parametrize("agent_id", [None, "web-1"])
def test_celery_and_kombu_get_the_tls_parameters_as_broker_use_ssl(agent_id: str | None) -> None:
    app = make_app("rediss://:pw@cache.example:6380/2", agent_id=agent_id)
    if agent_id:  # the agents' own transport (agents.worker.build_app) must connect over TLS too
        app.conf.broker_transport = "agents.transport:Transport"

    connection = app.connection_for_write()
    assert connection.ssl == {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_check_hostname": True}
    assert (connection.hostname, connection.port, connection.virtual_host) == ("cache.example", 6380, "2")
    connection.release()


def test_an_unreadable_ca_file_is_named_and_a_refused_certificate_says_what_to_check(tmp_path: Path) -> None:
    missing = tmp_path / "ca.pem"
    url = f"rediss://:pw@h:6380/0?ssl_ca_certs={missing}"
    said = unreachable(url, ConnectionError("Error 2 connecting to h:6380. No such file or directory."))
    assert f"ssl_ca_certs={missing} cannot be read" in said and ":pw@" not in said

    missing.write_text("")
    refused = ConnectionError(
        "Error 1 connecting to h:6380. [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify"
    )
    said = unreachable(url, refused)
    assert "over TLS" in said and f"checked against {missing}" in said and "ssl_ca_certs names the CA" in said
    assert "start it" in unreachable("redis://h:6379/0", ConnectionError("Connection refused"))
