"""The HTML report in a real headless Chromium, driven over the DevTools protocol on a pipe.

No driver package: Chromium's --remote-debugging-pipe reads NUL-terminated JSON commands on fd 3
and writes replies and events on fd 4. The test loads the page from file://, fails on any console
error or uncaught exception, checks that every <img> decoded (non-zero natural size) and saves a
full-page screenshot.
"""

import base64
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FIXTURE = Path(__file__).parent / "data" / "refdata" / "chinchilla_epoch_svg.csv"
COLUMNS = "N=Model Size,C=Training FLOP,loss=loss"

# In CI a missing browser is a failure (.ci/run installs it); elsewhere the test is skipped.
pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM) and not os.environ.get("CI"),
                                reason="Chromium is installed by .ci/run")


class Chromium:
    """A headless Chromium with a fresh profile, spoken to over --remote-debugging-pipe."""

    def __init__(self, profile: Path):
        commands_read, self._commands = os.pipe()
        self._replies, replies_write = os.pipe()
        # Chromium must find the pipes at fds 3 (commands in) and 4 (replies out). bash moves them
        # there before exec, so no Python runs in the forked child (JAX threads make that unsafe).
        command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                   "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                   "--hide-scrollbars", f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank"]
        self.process = subprocess.Popen(
            ["/bin/bash", "-c", f'exec "$@" 3<&{commands_read} 4>&{replies_write}', "chromium", *command],
            pass_fds=(commands_read, replies_write), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(commands_read)
        os.close(replies_write)
        self._buffer = b""
        self._next_id = 0
        self.events = []

    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self._replies], [], [], remaining)[0]:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self._replies, 1 << 16)
            if not chunk:
                raise RuntimeError(f"Chromium closed the pipe (exit code {self.process.poll()})")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def send(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 60) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        for event in self.events:
            if event.get("method") == method:
                return event
        while True:
            event = self._read_message(deadline)
            self.events.append(event)
            if event.get("method") == method:
                return event

    def close(self):
        try:
            self.send("Browser.close", timeout=10)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._commands)
        os.close(self._replies)


def load_in_chromium(page: Path, profile: Path, screenshot: Path) -> dict:
    """Open `page`, wait for load, and return console errors, image sizes and the screenshot path."""
    browser = Chromium(profile)
    try:
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            browser.send(f"{domain}.enable", session=session)
        browser.send("Emulation.setDeviceMetricsOverride",
                     {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False}, session=session)
        browser.send("Page.navigate", {"url": page.resolve().as_uri()}, session=session)
        browser.wait_for("Page.loadEventFired")
        images = browser.send("Runtime.evaluate", {
            "expression": "JSON.stringify(Array.from(document.images).map(i => "
                          "({alt: i.alt, complete: i.complete, width: i.naturalWidth, height: i.naturalHeight})))",
            "returnByValue": True}, session=session)["result"]["value"]
        title = browser.send("Runtime.evaluate", {"expression": "document.title", "returnByValue": True},
                             session=session)["result"]["value"]
        shot = browser.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True},
                            session=session)
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        screenshot.write_bytes(base64.b64decode(shot["data"]))
        errors = [e for e in browser.events if e.get("method") == "Runtime.exceptionThrown"
                  or (e.get("method") == "Runtime.consoleAPICalled" and e["params"]["type"] in ("error", "assert"))
                  or (e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")]
        return {"errors": errors, "images": json.loads(images), "title": title}
    finally:
        browser.close()


def test_harness_sees_console_errors_and_broken_images(tmp_path):
    """The checks below can fail: a page with a script error and an undecodable image is caught."""
    page = tmp_path / "broken.html"
    page.write_text('<!doctype html><html><head><meta charset="utf-8"><title>broken</title></head><body>'
                    '<img alt="bad" src="data:image/png;base64,AAAA"><script>console.error("boom")</script>'
                    '</body></html>')
    result = load_in_chromium(page, tmp_path / "profile", tmp_path / "broken.png")
    assert result["title"] == "broken"
    assert result["errors"] and result["images"] == [{"alt": "bad", "complete": True, "width": 0, "height": 0}]


@pytest.mark.slow
def test_report_renders_in_chromium(run_cli, tmp_path):
    """The report on Epoch's Chinchilla data: no console errors, every figure decoded, a screenshot."""
    out = tmp_path / "report.html"
    run_cli("report", FIXTURE, "-o", out, "--columns", COLUMNS, "--bootstrap=100", check=True)
    screenshot = tmp_path / "out" / "report_screenshot.png"
    result = load_in_chromium(out, tmp_path / "profile", screenshot)
    print(f"report: {out}\nscreenshot: {screenshot}")
    assert result["errors"] == []
    assert result["title"].startswith("Scaling report")
    assert len(result["images"]) >= 3
    assert all(image["complete"] and image["width"] > 0 and image["height"] > 0 for image in result["images"])
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
