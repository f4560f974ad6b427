"""A finished tiny sweep as its users see it: `mlflow server` on 127.0.0.1 over the sweep's
store, the experiment page in headless Chromium (Debian's, scripts/test-setup.sh), and the
server's REST API for what the page renders client-side (dataset inputs, system metrics)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from conftest import free_port
from test_orchestrator_spec import tiny_spec

import divsweep
from divsweep import tracking
from divsweep.orchestrator.spec import parse_spec

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
    "--disable-dev-shm-usage",
]  # fmt: skip


def start_server(store: str, workdir: Path, port: int) -> subprocess.Popen:
    """`mlflow server` over `store`, in its own process group, once /health answers."""
    cmd = [
        sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
        "--backend-store-uri", store, "--workers", "1",
        "--artifacts-destination", str(workdir / "artifacts"),
    ]  # fmt: skip
    log = open(workdir / "server.log", "ab")  # noqa: SIM115 - lives as long as the server
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, (workdir / "server.log").read_text()[-3000:]
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return proc
        except OSError:
            time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    raise AssertionError("mlflow server did not answer /health within 120 s")


def api(base: str, path: str, body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"{base}/ajax-api/2.0/mlflow/{path}",
        data=data,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def runs_page(binary: str, url: str, parent_id: str, shot: Path) -> str:
    """The runs page in headless Chromium (Playwright drives Debian's binary; no browser
    download): the sweep's row expanded to its trials; a screenshot; the page's text."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=binary, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 900})
            page.goto(url)
            parent = page.locator(f'a[href$="/runs/{parent_id}"]')
            parent.wait_for(timeout=60_000)
            assistant = page.get_by_label("Close")  # MLflow's assistant panel, if open
            if assistant.count():
                assistant.first.click()
            # the expander beside the sweep's name in its cell: its trials nest under it
            parent.locator("xpath=../..").locator("button").first.click()
            page.get_by_text("rewrite train", exact=False).first.wait_for(timeout=60_000)
            page.screenshot(path=str(shot))
            return page.inner_text("body")
        finally:
            browser.close()


@pytest.mark.slow
def test_mlflow_ui_shows_the_sweep_its_datasets_and_system_metrics(
    ray_session, tmp_path: Path
) -> None:
    binary = shutil.which("chromium")
    if binary is None:
        pytest.skip("chromium not installed (scripts/test-setup.sh installs Debian's chromium)")
    pytest.importorskip("playwright", reason="playwright is a dev dependency (make install)")
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    spec = parse_spec(tiny_spec(tmp_path, name="monitored"))
    sweep = divsweep.run(spec, tracking_uri=store, progress=False)
    assert not sweep.interrupted

    port = free_port()
    server = start_server(store, tmp_path, port)
    try:
        base = f"http://127.0.0.1:{port}"
        exp = api(base, "experiments/get-by-name?experiment_name=monitored")["experiment"]
        tags = {t["key"]: t["value"] for t in exp.get("tags", [])}
        assert tags[tracking.EXPERIMENT_KIND] == tracking.CUSTOM_MODEL  # opens on its runs
        found = api(base, "runs/search", {"experiment_ids": [exp["experiment_id"]]})["runs"]
        children = [r for r in found if r["info"]["run_id"] != sweep.parent_run_id]
        assert len(children) == 2 and len(found) == 3
        for child in children:
            inputs = child["inputs"]["dataset_inputs"]
            contexts = {t["value"] for i in inputs for t in i["tags"]}
            assert contexts == {"training", "eval_seen", "eval_unseen", "eval_unseen_val"}
            query = urllib.parse.urlencode(
                {"run_id": child["info"]["run_id"], "metric_key": tracking.PROCESS_RSS}
            )
            history = api(base, f"metrics/get-history?{query}")["metrics"]
            assert history and all(m["value"] > 10 for m in history)  # MB: a trial's process

        url = f"{base}/#/experiments/{exp['experiment_id']}/runs"
        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / "mlflow-runs.png"
        shot.unlink(missing_ok=True)
        page_text = runs_page(binary, url, sweep.parent_run_id, shot)
        # the parent and, expanded, its children, each with its training set in the Dataset
        # column (the page shows the first input's name and "+2" for the eval sets)
        runs = [c["info"]["run_name"] for c in children]
        for child in children:
            (train,) = [
                i["dataset"]["name"]
                for i in child["inputs"]["dataset_inputs"]
                if i["tags"][0]["value"] == "training"
            ]
            assert train in page_text
        assert all(name in page_text for name in [*runs, "Training runs"]), page_text[:3000]
        assert shot.stat().st_size > 10_000
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
