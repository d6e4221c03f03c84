"""Redis over TLS: what a `rediss://` broker URL says about checking the server's certificate.

    rediss://[[USER]:PASSWORD@]HOST[:PORT][/DB][?ssl_ca_certs=/PATH/TO/ca.pem&ssl_cert_reqs=required]

redis-py, kombu and Celery each read these query parameters in their own way, with other defaults (kombu,
given none, connects without checking the certificate at all). So they are read here, once, and handed to
each as keyword arguments, with the URL stripped of them: `split`. The certificate is checked unless the URL
says `ssl_cert_reqs=none`: against `ssl_ca_certs` (else the system's CAs), with the host name matched too
unless `ssl_check_hostname=false`. `ssl_certfile` and `ssl_keyfile` are a client certificate, for a Redis
with `tls-auth-clients yes`.
"""

from __future__ import annotations

import os
import ssl
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

SCHEME = "rediss"
CERT_REQS = {"required": ssl.CERT_REQUIRED, "optional": ssl.CERT_OPTIONAL, "none": ssl.CERT_NONE}
PATH_KEYS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile")
# The TLS parameters that are read; any other `ssl_*` is refused, so that a misspelled one is not ignored.
QUERY_KEYS = ("ssl_cert_reqs", *PATH_KEYS, "ssl_check_hostname")
_BOOLEANS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}


def is_tls(url: str) -> bool:
    return url.startswith(SCHEME + "://")


def split(url: str) -> tuple[str, dict[str, Any]]:
    """The URL without its TLS parameters, and those as redis-py's `SSLConnection` (and kombu's `ssl`)
    keyword arguments; no arguments for a URL that is not rediss://. ValueError saying what is wrong
    (an unknown `ssl_*` parameter, a bad value, TLS parameters on a redis:// URL); the message shows no
    password."""
    parts = urlsplit(url)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    given = {key: value for key, value in pairs if key.startswith("ssl_")}
    rest = [(key, value) for key, value in pairs if not key.startswith("ssl_")]
    if not is_tls(url):
        if given:
            first = sorted(given)[0]
            raise ValueError(f"{first} is a TLS parameter: write rediss:// to reach Redis over TLS")
        return url, {}
    unknown = sorted(set(given) - set(QUERY_KEYS))
    if unknown:
        raise ValueError(f"unknown parameter {unknown[0]!r}: a rediss:// URL takes {', '.join(QUERY_KEYS)}")
    reqs = given.get("ssl_cert_reqs", "required").lower().removeprefix("cert_")
    if reqs not in CERT_REQS:
        raise ValueError(f"ssl_cert_reqs={given['ssl_cert_reqs']!r}: expected {', '.join(CERT_REQS)}")
    options: dict[str, Any] = {"ssl_cert_reqs": CERT_REQS[reqs]}
    for key in PATH_KEYS:
        if given.get(key):
            options[key] = given[key]
    check = given.get("ssl_check_hostname", "false" if reqs == "none" else "true").lower()
    if check not in _BOOLEANS:
        raise ValueError(f"ssl_check_hostname={given['ssl_check_hostname']!r}: expected true or false")
    options["ssl_check_hostname"] = _BOOLEANS[check] and reqs != "none"
    if options.get("ssl_keyfile") and not options.get("ssl_certfile"):
        raise ValueError("ssl_keyfile without ssl_certfile: a client certificate needs both")
    return parts._replace(query=urlencode(rest)).geturl(), options


def describe(options: dict[str, Any]) -> str:
    """How the server's certificate is checked, for the start lines of the engine and the agents."""
    if options.get("ssl_cert_reqs") == ssl.CERT_NONE:
        return "TLS, the server's certificate not checked (ssl_cert_reqs=none)"
    against = options.get("ssl_ca_certs") or "the system's CAs"
    host = ", and its host name" if options.get("ssl_check_hostname") else ""
    client = f"; client certificate {options['ssl_certfile']}" if options.get("ssl_certfile") else ""
    return f"TLS, the server's certificate checked against {against}{host}{client}"


def unreadable(options: dict[str, Any]) -> str | None:
    """The first of the URL's CA and client certificate files that this process cannot read, as
    `ssl_ca_certs=PATH`; None when all can be (redis-py says only "No such file or directory")."""
    for key in PATH_KEYS:
        path = options.get(key)
        if path and not os.access(path, os.R_OK):
            return f"{key}={path}"
    return None


def is_tls_error(exc: BaseException) -> bool:
    """Whether a connection error (or what caused it) is the TLS handshake's: a certificate refused, a CA
    file that cannot be read, or a server that does not speak TLS."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError) or "SSL" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
