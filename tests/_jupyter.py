"""Start JupyterLab and drive it in headless Chromium, for the browser tests.

A plain helper module (no fixtures): ``tests/test_browser.py`` loads it by path. JupyterLab runs
as a subprocess on 127.0.0.1 with a random free port and a generated token, in a temporary root
folder, with its settings, workspaces and runtime files in temporary folders too, so a run never
writes into the repository or the user's home. The browser is Debian's ``chromium`` driven by
Playwright's Python package through ``executable_path`` (no browser is downloaded).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

CHROMIUM = Path(os.environ.get("HPCLAB_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]


def chromium_missing_reason() -> str | None:
    """Why the browser tests cannot run here (None if they can)."""
    if not CHROMIUM.exists():
        return (f"{CHROMIUM} not found: install Debian's chromium (apt-get install chromium) "
                "or set HPCLAB_CHROMIUM to a Chromium binary")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright Python package is not installed (pip install -e '.[dev]')"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class JupyterLab:
    """A JupyterLab server on 127.0.0.1 with a token, serving ``root_dir``.

    Use as a context manager; ``url(path)`` gives an address with the token. The server's log
    goes to ``work_dir/jupyter.log``.
    """

    def __init__(self, root_dir: Path, work_dir: Path, timeout: float = 90.0):
        self.root_dir = Path(root_dir)
        self.work_dir = Path(work_dir)
        self.timeout = timeout
        self.port = free_port()
        self.token = secrets.token_hex(24)
        self.proc: subprocess.Popen | None = None
        self.log_path = self.work_dir / "jupyter.log"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str = "/lab") -> str:
        sep = "&" if "?" in path else "?"
        return f"{self.base}{path}{sep}token={self.token}"

    def command(self) -> list[str]:
        jupyter = Path(sys.executable).with_name("jupyter")
        cmd = [str(jupyter), "lab", "--ip=127.0.0.1", f"--port={self.port}", "--port-retries=0",
               f"--IdentityProvider.token={self.token}", "--ServerApp.open_browser=False",
               f"--ServerApp.root_dir={self.root_dir}",
               # window.jupyterapp, so the test runs JupyterLab commands by id
               "--LabApp.expose_app_in_browser=True",
               # no network: never ask for updates or news
               "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
               "--LabApp.news_url=None",
               f"--LabApp.user_settings_dir={self.work_dir / 'settings'}",
               f"--LabApp.workspaces_dir={self.work_dir / 'workspaces'}"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            cmd.append("--allow-root")
        return cmd

    def start(self) -> "JupyterLab":
        for sub in ("settings", "workspaces", "runtime"):
            (self.work_dir / sub).mkdir(parents=True, exist_ok=True)
        # Silence the "receive official Jupyter news?" toast so it never covers a cell.
        ann = self.work_dir / "settings" / "@jupyterlab" / "apputils-extension"
        ann.mkdir(parents=True, exist_ok=True)
        (ann / "notification.jupyterlab-settings").write_text(
            json.dumps({"fetchNews": "false", "checkForUpdates": False, "doNotDisturbMode": True}))
        env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(self.work_dir / "runtime"),
                   BOKEH_RESOURCES="inline", PYTHONUNBUFFERED="1")
        env.pop("JUPYTER_TOKEN", None)
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.command(), cwd=self.root_dir, env=env, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with {self.proc.returncode}: "
                                   f"{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url("/api/status"), timeout=2) as r:
                    if r.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.3)
        self.stop()
        raise TimeoutError(f"jupyter lab did not answer within {self.timeout:.0f} s: {self.log_tail()}")

    def log_tail(self, n: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            # The server and its kernels share a process group (start_new_session above).
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        self.proc = None
        self._log.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def copy_notebooks(src: Path, dst: Path, names=None) -> Path:
    """Copy notebooks (all ``*.ipynb`` of ``src``, or ``names``) into ``dst``."""
    dst.mkdir(parents=True, exist_ok=True)
    for path in sorted(Path(src).glob("*.ipynb")):
        if names is None or path.name in names:
            shutil.copy2(path, dst / path.name)
    return dst


def launch_browser(playwright):
    """Debian's Chromium, headless, with nothing that reaches the network by itself."""
    return playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                      args=CHROMIUM_ARGS)


# --- driving a notebook --------------------------------------------------------------------------

_WAIT_KERNEL_JS = """
async () => {
  const app = window.jupyterapp;
  const panel = app.shell.currentWidget;
  if (!panel || !panel.sessionContext) { return 'no notebook panel'; }
  await panel.context.ready;
  await panel.sessionContext.ready;
  const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
  return kernel ? kernel.status : 'no kernel';
}
"""

_RUN_ALL_JS = """
async () => {
  const ok = await window.jupyterapp.commands.execute('notebook:run-all-cells');
  return ok === undefined ? null : ok;
}
"""

def open_notebook(page, lab: JupyterLab, name: str, timeout_ms: int = 60_000):
    """Open ``name`` (relative to the server's root) in JupyterLab and wait for its kernel.

    Returns a locator of the notebook's panel (the current JupyterLab widget)."""
    # ?reset: a fresh workspace, so notebooks opened by earlier tests do not come back as tabs
    page.goto(lab.url(f"/lab/tree/{name}?reset"), wait_until="domcontentloaded", timeout=timeout_ms)
    page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell", timeout=timeout_ms)
    page.locator(".jp-NotebookPanel .jp-Notebook .jp-Cell").first.wait_for(timeout=timeout_ms)
    page.wait_for_function(
        f"() => {{ const w = window.jupyterapp.shell.currentWidget; "
        f"return w && w.context && w.context.path.endsWith({json.dumps(name)}); }}",
        timeout=timeout_ms)
    status = page.evaluate(_WAIT_KERNEL_JS)
    if status == "no notebook panel":
        raise AssertionError(f"{name} did not open as a notebook")
    wait_kernel_idle(page, timeout_ms)
    return current_panel(page)


def current_panel(page):
    """A locator of JupyterLab's current widget (the open notebook's panel)."""
    panel_id = page.evaluate("() => window.jupyterapp.shell.currentWidget.id")
    return page.locator(f"[id='{panel_id}']")


def wait_kernel_idle(page, timeout_ms: int = 60_000) -> None:
    """Wait until the kernel is idle and no cell shows a busy prompt ``[*]``."""
    page.wait_for_function(
        "() => { const p = window.jupyterapp.shell.currentWidget; "
        "const k = p && p.sessionContext.session && p.sessionContext.session.kernel; "
        "if (!k || k.status !== 'idle') return false; "
        "return !Array.from(p.node.querySelectorAll('.jp-Notebook .jp-InputPrompt'))"
        ".some(e => e.textContent.includes('*')); }",
        timeout=timeout_ms, polling=250)


def run_all_cells(page, timeout_ms: int = 120_000) -> float:
    """Run every cell with JupyterLab's ``notebook:run-all-cells`` command; return seconds."""
    t0 = time.monotonic()
    page.evaluate(_RUN_ALL_JS)
    wait_kernel_idle(page, timeout_ms)
    return time.monotonic() - t0


def shutdown_kernel(page) -> None:
    """Shut the open notebook's kernel down (frees its memory before the next notebook)."""
    page.evaluate("async () => { const w = window.jupyterapp.shell.currentWidget; "
                  "if (w && w.sessionContext) { await w.sessionContext.shutdown(); } }")


def cell_errors(page) -> list[str]:
    """Text of error outputs in the open notebook (tracebacks)."""
    return page.evaluate(
        "() => Array.from(window.jupyterapp.shell.currentWidget.node"
        ".querySelectorAll('.jp-Notebook .jp-OutputArea-output'))"
        ".filter(e => e.getAttribute('data-mime-type') === 'application/vnd.jupyter.error' "
        "|| e.querySelector('.jp-RenderedText[data-mime-type=\"application/vnd.jupyter.error\"]'))"
        ".map(e => e.innerText.slice(0, 600))")


def execution_counts(page) -> list[str]:
    """``[n]:`` per code cell, from the notebook's model (cells whose input is collapsed, such as
    the exercises' solutions, show no prompt in the page but run all the same)."""
    return page.evaluate(
        "() => window.jupyterapp.shell.currentWidget.content.widgets"
        ".filter(c => c.model.type === 'code')"
        ".map(c => c.model.executionCount == null ? '' : `[${c.model.executionCount}]:`)")


# --- one default report per test session ---------------------------------------------------------
# The default report runs every workflow's scenario (tens of seconds); tests/test_report.py and
# tests/test_browser.py share one build through this module (registered once in sys.modules).

_REPORT: dict = {}


def default_report(out_dir: Path):
    """Build ``hpclab.report.write_report`` once per session; return (report, path)."""
    if "report" not in _REPORT:
        from hpclab.report import write_report

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / "report.html"
        _REPORT["report"] = (write_report(path), path)
    return _REPORT["report"]

