"""The console in a real browser (headless Chromium through Selenium) against a real engine and agent: live
progress without a reload, cancel, retry, the history filters and a failed step's output.

Each test saves a screenshot to $CONVERGE_ARTEFACTS (default: the test's tmp_path). Locally the tests skip
when /usr/bin/chromedriver is absent; in CI (CI set) they fail instead, so that nothing is skipped there.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import Cluster, desired_state

pytestmark = pytest.mark.integration
DRIVER = Path("/usr/bin/chromedriver")
WAIT_S = 30

if not DRIVER.exists() and not os.environ.get("CI"):
    pytest.skip("no /usr/bin/chromedriver: apt-get install chromium chromium-driver", allow_module_level=True)

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as ec  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


@pytest.fixture
def browser(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Any]:
    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(DRIVER)), options=options)
    try:
        yield driver
    finally:
        folder = Path(os.environ.get("CONVERGE_ARTEFACTS") or tmp_path / "artefacts")
        folder.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(folder / f"{request.node.name}.png"))
        driver.quit()


def log_in(driver: Any, cluster: Cluster) -> str:
    base = cluster.env["CONVERGE_URL"].rstrip("/")
    driver.get(base + "/console/login")
    driver.find_element(By.ID, "token").send_keys(cluster.token)
    driver.find_element(By.ID, "login").click()
    WebDriverWait(driver, WAIT_S).until(ec.url_contains("/console/workflows"))
    return base


def submit(cluster: Cluster, name: str, resources: str) -> str:
    result = cluster.cli(
        "apply", str(cluster.write(f"{name}.yaml", desired_state(name, resources))), "--json"
    )
    assert result.returncode == 0, result.stderr
    return str(json.loads(result.stdout)["workflow"]["id"])


def state_is(driver: Any, state: str) -> Any:
    return ec.text_to_be_present_in_element((By.ID, "workflow-state"), state)


def test_a_workflow_progresses_live_on_its_page_without_a_reload(
    cluster: Cluster, browser: Any, tmp_path: Path
) -> None:
    cluster.start_agent("work", agent_id="work-1")
    gate = tmp_path / "gate"
    workflow_id = submit(
        cluster,
        "gated",
        f"  - {{kind: wait_for, name: gate, role: work, spec: {{path: {gate}, within_s: 120}}}}\n"
        f"  - {{kind: file, name: after, role: work, depends_on: [wait_for/gate], spec: {{path: {tmp_path}/after, content: x}}}}\n",
    )
    base = log_in(browser, cluster)
    browser.get(f"{base}/console/workflows/{workflow_id}")
    WebDriverWait(browser, WAIT_S).until(state_is(browser, "running"))
    browser.execute_script("window.notReloaded = true")
    gate.touch()
    WebDriverWait(browser, WAIT_S).until(state_is(browser, "succeeded"))
    assert browser.execute_script("return window.notReloaded") is True
    assert "2 of 2 steps succeeded" in browser.page_source


def test_a_running_workflow_is_cancelled_from_its_page(
    cluster: Cluster, browser: Any, tmp_path: Path
) -> None:
    cluster.start_agent("work", agent_id="work-1")
    workflow_id = submit(
        cluster,
        "held",
        f"  - {{kind: wait_for, name: never, role: work, spec: {{path: {tmp_path}/never, within_s: 120}}}}\n",
    )
    base = log_in(browser, cluster)
    browser.get(f"{base}/console/workflows/{workflow_id}")
    WebDriverWait(browser, WAIT_S).until(state_is(browser, "running"))
    WebDriverWait(browser, WAIT_S).until(ec.element_to_be_clickable((By.ID, "cancel"))).click()
    WebDriverWait(browser, WAIT_S).until(ec.alert_is_present()).accept()
    WebDriverWait(browser, WAIT_S).until(state_is(browser, "cancelled"))


def test_a_failed_workflow_shows_its_output_and_succeeds_when_retried(
    cluster: Cluster, browser: Any, tmp_path: Path
) -> None:
    cluster.start_agent("work", agent_id="work-1")
    ready = tmp_path / "ready"
    run = f"echo looking for {ready}; test -e {ready} || exit 3; touch {tmp_path}/done"
    workflow_id = submit(
        cluster,
        "flaky",
        f'  - {{kind: command, name: flaky, role: work, spec: {{run: "{run}", creates: {tmp_path}/done}}}}\n',
    )
    base = log_in(browser, cluster)
    browser.get(f"{base}/console/workflows/{workflow_id}")
    WebDriverWait(browser, WAIT_S).until(state_is(browser, "failed"))
    output = WebDriverWait(browser, WAIT_S).until(
        ec.presence_of_element_located((By.CLASS_NAME, "step-output"))
    )
    assert f"looking for {ready}" in output.text
    ready.touch()
    browser.find_element(By.ID, "retry").click()
    WebDriverWait(browser, WAIT_S).until(state_is(browser, "succeeded"))


def test_a_succeeded_workflow_is_found_in_history_with_the_filters(
    cluster: Cluster, browser: Any, tmp_path: Path
) -> None:
    cluster.start_agent("work", agent_id="work-1")
    for name in ("alpha-estate", "beta-estate"):
        result = cluster.apply(
            cluster.write(
                f"{name}.yaml",
                desired_state(
                    name,
                    f"  - {{kind: file, name: f, role: work, spec: {{path: {tmp_path}/{name}, content: x}}}}\n",
                ),
            )
        )
        assert result["exit_code"] == 0
    base = log_in(browser, cluster)
    browser.get(f"{base}/console/workflows?view=history")
    browser.find_element(By.ID, "filter-name").send_keys("beta")
    browser.find_element(By.ID, "filter").click()
    WebDriverWait(browser, WAIT_S).until(ec.url_contains("name=beta"))
    rows = WebDriverWait(browser, WAIT_S).until(
        ec.presence_of_all_elements_located((By.CLASS_NAME, "workflow-row"))
    )
    assert len(rows) == 1 and "beta-estate" in rows[0].text and "succeeded" in rows[0].text
    browser.get(f"{base}/console/agents")
    WebDriverWait(browser, WAIT_S).until(ec.text_to_be_present_in_element((By.ID, "agents"), "work-1"))


def test_a_hand_edit_shows_as_drift_with_its_diff_on_the_compliance_page(
    cluster: Cluster, browser: Any, tmp_path: Path
) -> None:
    cluster.start_agent("work", agent_id="work-1")
    target = tmp_path / "motd"
    desired = cluster.write(
        "motd.yaml",
        desired_state(
            "motd-watch",
            f'  - {{kind: file, name: motd, role: work, spec: {{path: {target}, content: "welcome\\n"}}}}\n',
        ),
    )
    assert cluster.apply(desired)["exit_code"] == 0
    assert cluster.cli("schedule", "set", str(desired), "--every", "2s").returncode == 0
    base = log_in(browser, cluster)
    browser.get(f"{base}/console/compliance")
    WebDriverWait(browser, WAIT_S).until(ec.text_to_be_present_in_element((By.ID, "compliance"), "compliant"))
    target.write_text("edited by hand\n")
    # The page updates itself: no reload between the edit and the drift on screen.
    WebDriverWait(browser, WAIT_S).until(ec.text_to_be_present_in_element((By.ID, "compliance"), "drifted"))
    diff = WebDriverWait(browser, WAIT_S).until(ec.presence_of_element_located((By.CLASS_NAME, "diff")))
    assert "-edited by hand" in diff.text and "+welcome" in diff.text
    assert "file/motd on work-1" in browser.find_element(By.ID, "compliance").text
    assert target.read_text() == "edited by hand\n"  # report mode: the file stays as edited
