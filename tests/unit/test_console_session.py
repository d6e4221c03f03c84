"""The console's session rules (engine.session) and its paged store queries (common.store.console)."""

from __future__ import annotations

from pathlib import Path

from common.models import WorkflowState
from common.store import open_store
from common.store.console import WorkflowFilter
from engine import session
from workflows.plan import plan
from workflows.registry import default_registry
from workflows.spec import load_text


def test_only_the_console_paths_read_the_cookie_and_only_login_logout_and_static_are_open() -> None:
    assert session.is_console("/") and session.is_console("/console/agents")
    assert not session.is_console("/v1/workflows") and not session.is_console("/consoles")
    assert session.is_open("POST", session.LOGIN) and session.is_open("GET", "/console/static/htmx.min.js")
    assert not session.is_open("POST", "/console/static/htmx.min.js")
    assert not session.is_open("GET", "/console/workflows")


def test_the_cookie_token_is_read_from_a_cookie_header_and_a_malformed_one_is_no_session() -> None:
    assert session.cookie_token(f"a=b; {session.COOKIE}=cvg_x") == "cvg_x"
    assert session.cookie_token("a=b") is None
    assert session.cookie_token(None) is None


def test_a_post_needs_the_engines_own_origin_and_the_sessions_csrf_token() -> None:
    token = "cvg_secret"
    good = {"host": "engine:8443", "origin": "https://engine:8443", "x-csrf-token": session.csrf_of(token)}
    assert session.csrf_refusal(good, "https", token) is None
    assert session.csrf_refusal({**good, "origin": "https://evil.example"}, "https", token)
    assert session.csrf_refusal({**good, "origin": "http://engine:8443"}, "https", token)
    assert session.csrf_refusal({**good, "x-csrf-token": session.csrf_of("cvg_other")}, "https", token)
    referer = {k: v for k, v in good.items() if k != "origin"} | {"referer": "https://engine:8443/console/x"}
    assert session.csrf_refusal(referer, "https", token) is None
    assert session.csrf_refusal({k: v for k, v in good.items() if k != "origin"}, "https", token)


def test_the_cookie_is_httponly_strict_on_every_path_and_secure_over_https() -> None:
    header = session.set_cookie_header("cvg_x", secure=True)
    assert all(p in header for p in ("HttpOnly", "SameSite=Strict", "Path=/", "Secure"))
    assert "Secure" not in session.set_cookie_header("cvg_x", secure=False)
    assert "Max-Age=0" in session.clear_cookie_header(secure=False)


def test_the_store_pages_workflows_by_filter_and_steps_in_plan_order(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    registry = default_registry()
    for i in range(7):
        res = "".join(
            f"  - {{kind: file, name: f{j}, role: web, spec: {{path: /tmp/f{j}, content: x}}"
            + (f", depends_on: [file/f{j - 1}]}}\n" if j else "}\n")
            for j in range(i + 1)
        )
        source = (
            f"apiVersion: converge/v1\nkind: DesiredState\nmetadata: {{name: estate-{i}}}\nresources:\n{res}"
        )
        store.create_workflow(plan(load_text(source, "x.yaml", registry), f"wf{i:010d}"), source)

    page, total = store.workflow_page(WorkflowFilter(), limit=3, offset=3)
    named, one = store.workflow_page(WorkflowFilter(name="estate-6"), limit=50)
    none, zero = store.workflow_page(WorkflowFilter(state=WorkflowState.SUCCEEDED), limit=50)
    steps, counts = store.step_page("wf0000000006", limit=2, offset=4)
    store.close()

    assert total == 7 and len(page) == 3
    assert (one, [w.name for w in named]) == (1, ["estate-6"])
    assert (zero, none) == (0, [])
    assert [(s.resource, deps) for s, deps in steps] == [("file/f4", ["file/f3"]), ("file/f5", ["file/f4"])]
    assert sum(counts.values()) == 7
