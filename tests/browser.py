"""A small WebDriver client on the standard library, for tests of pages in a real browser.

Starts Debian's chromedriver (/usr/bin/chromedriver) on a free 127.0.0.1 port, driving a headless Chromium
(/usr/bin/chromium) with a fresh profile and every background fetch turned off; nothing reaches the network and no
driver manager is involved. `missing()` says why a test cannot run (then skip it).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                 "--window-size=1400,1000"]
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"  # W3C WebDriver's key of an element reference


def missing() -> str | None:
    """Why no browser test can run here (None: they can)."""
    absent = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    if absent:
        return f"{' and '.join(absent)} not installed (apt-get install chromium chromium-driver)"
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Browser:
    """One headless Chromium session; use as a context manager."""

    def __init__(self, timeout: float = 30.0):
        self.profile = tempfile.mkdtemp(prefix="chromium-profile-")
        self.port = _free_port()
        self.driver = subprocess.Popen([CHROMEDRIVER, f"--port={self.port}"], stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)
        self.session = None
        try:
            self._wait_ready(timeout)
            options = {"binary": CHROMIUM, "args": [*CHROMIUM_ARGS, f"--user-data-dir={self.profile}"]}
            caps = {"browserName": "chrome", "goog:chromeOptions": options, "goog:loggingPrefs": {"browser": "ALL"}}
            self.session = self._call("POST", "/session", {"capabilities": {"alwaysMatch": caps}}, base="")["sessionId"]
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self._call("GET", "/status", base="")["ready"]:
                    return
            except (OSError, RuntimeError):
                pass
            if time.monotonic() > deadline or self.driver.poll() is not None:
                raise RuntimeError("chromedriver did not start")
            time.sleep(0.1)

    def _call(self, method: str, path: str, body=None, base: str | None = None):
        """One WebDriver command; returns its "value", RuntimeError with the driver's message on an error."""
        prefix = f"/session/{self.session}" if base is None else base
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{prefix}{path}", data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                return json.loads(response.read())["value"]
        except urllib.error.HTTPError as err:
            value = json.loads(err.read() or b"{}").get("value", {})
            raise RuntimeError(f"WebDriver {method} {path}: {value.get('error')}: {value.get('message')}") from None

    def open(self, path, fragment: str = "") -> None:
        """Navigate to a local file (file:// URL, with #fragment if given); returns when the page has loaded. With a
        fragment the page is loaded afresh (about:blank first), never scrolled within the page already open."""
        if fragment:
            self._call("POST", "/url", {"url": "about:blank"})
        self._call("POST", "/url", {"url": Path(path).resolve().as_uri() + (f"#{fragment}" if fragment else "")})

    def run(self, script: str, *args):
        """Result of a synchronous script (a function body: `return ...`; arguments as `arguments[k]`)."""
        return self._call("POST", "/execute/sync", {"script": script, "args": list(args)})

    def run_async(self, script: str, *args):
        """Result of an asynchronous script: it ends by calling its last argument with the result."""
        return self._call("POST", "/execute/async", {"script": script, "args": list(args)})

    def find(self, css: str) -> dict:
        """Element reference of the first match of a CSS selector (RuntimeError when there is none)."""
        return {ELEMENT: self._call("POST", "/element", {"using": "css selector", "value": css})[ELEMENT]}

    def click(self, css: str) -> None:
        """Click the first element matching css, as a person would (scrolled into view first)."""
        element = self.find(css)
        self.run("arguments[0].scrollIntoView({block: 'center'});", element)
        self._call("POST", f"/element/{element[ELEMENT]}/click", {})

    def hover(self, css: str) -> None:
        """Move the mouse over the centre of the first element matching css."""
        element = self.find(css)
        self.run("arguments[0].scrollIntoView({block: 'center'});", element)
        move = {"type": "pointerMove", "duration": 0, "origin": element, "x": 0, "y": 0}
        self._call("POST", "/actions", {"actions": [
            {"type": "pointer", "id": "mouse", "parameters": {"pointerType": "mouse"}, "actions": [move]}]})

    def console(self) -> list[dict]:
        """Browser console entries since the last call ({"level", "message", ...})."""
        return self._call("POST", "/se/log", {"type": "browser"})

    def screenshot(self) -> bytes:
        """PNG of the viewport."""
        return base64.b64decode(self._call("GET", "/screenshot"))

    def close(self) -> None:
        """End the session, stop chromedriver, remove the profile."""
        try:
            if self.session is not None:
                self._call("DELETE", "")
        except (OSError, RuntimeError):
            pass
        finally:
            self.session = None
            if self.driver.poll() is None:
                self.driver.terminate()
                try:
                    self.driver.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.driver.kill()
            shutil.rmtree(self.profile, ignore_errors=True)
