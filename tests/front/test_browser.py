"""JupyterLab in headless Chromium: open the sweep notebook, run it, change a widget, press Run,
and see the figure appear. The test installs Chromium (Debian package) if it is missing, starts
JupyterLab on 127.0.0.1 with a private token, and stops everything afterwards."""

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from helpers import FLAGS, ensure_chromium

from workbench.front.study import notebooks_dir

pytestmark = pytest.mark.browser  # JupyterLab driven in headless Chromium


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def lab(tmp_path):
    shutil.copy(notebooks_dir() / "sweep.ipynb", tmp_path / "sweep.ipynb")
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(os.environ, WORKBENCH_DATA_DIR=os.environ["WORKBENCH_DATA_DIR"], JUPYTER_CONFIG_DIR=str(tmp_path / "cfg"),
               JUPYTER_RUNTIME_DIR=str(tmp_path / "rt"), HOME=str(tmp_path))
    proc = subprocess.Popen([sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
                             f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={tmp_path}",
                             "--ServerApp.open_browser=False", "--allow-root"],
                            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "lab.log", "w"))
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if proc.poll() is not None:
                    pytest.fail(f"JupyterLab exited: {(tmp_path / 'lab.log').read_text()[-1000:]}")
                time.sleep(1)
        yield url, token, tmp_path
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_sweep_notebook_in_jupyterlab_widget_run_shows_figure(lab):
    playwright = pytest.importorskip("playwright.sync_api", reason="pip install -e '.[test]' installs playwright")
    url, token, folder = lab
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=ensure_chromium(), headless=True, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{url}/lab/tree/sweep.ipynb?token={token}")
            page.wait_for_selector(".jp-Notebook", timeout=120_000)
            page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=120_000)
            page.wait_for_timeout(3000)  # let the kernel connection settle
            page.locator("[data-command='notebook:restart-run-all']").first.click()
            page.locator(".jp-Dialog button.jp-mod-accept").first.click()
            # the panel appears once its cell has run; wait for the whole notebook to finish
            run_button = page.locator(".jupyter-widgets button", has_text="Run")
            try:
                run_button.first.wait_for(timeout=240_000)
            except Exception:
                page.screenshot(path=str(folder / "stuck.png"), full_page=True)
                print((folder / "lab.log").read_text()[-3000:])
                raise
            page.wait_for_function("document.querySelectorAll('.jp-Cell-outputArea img').length >= 2",
                                   timeout=300_000)  # the notebook's own fit and curves figures
            page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=300_000)
            # change a widget: a shorter horizon makes new runs; press Run and wait for the panel's figure
            steps = page.locator(".widget-inline-hbox:has(label:text-is('max steps')) input")
            steps.fill("20")
            steps.press("Enter")
            run_button.first.click()
            page.wait_for_function(
                "[...document.querySelectorAll('.widget-html-content')].some(e => e.textContent.includes('done'))",
                timeout=300_000)
            panel_imgs = page.locator(".jupyter-widgets .jp-OutputArea-output img")
            panel_imgs.first.wait_for(timeout=60_000)
            assert panel_imgs.count() >= 1
            page.screenshot(path=str(folder / "lab.png"))
            command = page.locator(".jupyter-widgets textarea").first.input_value()
            assert "sweep.train.max_steps=20" in command
        finally:
            browser.close()
    runs = list((folder / "runs" / "smoke").glob("pretrain-*/summary.json"))  # the smoke profile's root
    assert len(runs) == 3 + 3  # the notebook's run (L1-3) and the panel's run with max_steps=20
