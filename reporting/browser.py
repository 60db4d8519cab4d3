"""Loads an HTML page in a real headless Chromium and reports what a person would see.

Talks the DevTools protocol over `--remote-debugging-pipe` (no extra packages, no port):
console errors, uncaught exceptions, failed loads and every request that leaves the machine
are collected while the page loads; then a full-page screenshot is taken and JavaScript
expressions are evaluated in the page (e.g. the section titles).

Example:
    >>> page = load_page("report.html", screenshot="report.png",
    ...                  evaluate={"titles": "[...document.querySelectorAll('h2')].map(e => e.textContent)"})
    >>> page.errors, page.values["titles"]
"""
from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


class BrowserError(RuntimeError):
    """Chromium is missing, crashed or did not answer in time."""


def find_chromium() -> str | None:
    """The path of a Chromium/Chrome binary ($CHROMIUM first), or None."""
    if os.environ.get("CHROMIUM"):
        return os.environ["CHROMIUM"]
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


@dataclass
class PageResult:
    """What loading a page produced.

    errors: console errors/asserts, uncaught exceptions, error log entries, failed loads.
    external_requests: URLs requested that are not file:, data: or about: (a
        self-contained page has none).
    values: results of the `evaluate` expressions, by name.
    screenshot: the PNG written, if one was asked for.
    """

    errors: list[str] = field(default_factory=list)
    external_requests: list[str] = field(default_factory=list)
    values: dict = field(default_factory=dict)
    screenshot: Path | None = None


class _Pipe:
    """DevTools protocol over the two pipes Chromium opens as fds 3 (in) and 4 (out)."""

    def __init__(self, proc, write_fd: int, read_fd: int, timeout: float):
        self.proc, self.write_fd, self.read_fd = proc, write_fd, read_fd
        self.deadline = time.monotonic() + timeout
        self.buffer = b""
        self.next_id = 0
        self.events: list[dict] = []

    def _read_message(self) -> dict:
        while b"\0" not in self.buffer:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise BrowserError("Chromium did not answer in time")
            ready, _, _ = select.select([self.read_fd], [], [], left)
            if ready:
                chunk = os.read(self.read_fd, 1 << 20)
                if not chunk:
                    raise BrowserError(f"Chromium exited (status {self.proc.poll()})")
                self.buffer += chunk
        raw, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(raw)

    def call(self, method: str, session: str | None = None, **params) -> dict:
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        os.write(self.write_fd, json.dumps(msg).encode() + b"\0")
        while True:
            reply = self._read_message()
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error'].get('message')}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str) -> dict:
        for i, event in enumerate(self.events):
            if event.get("method") == method:
                return self.events.pop(i)
        while True:
            event = self._read_message()
            if event.get("method") == method:
                return event
            self.events.append(event)


def _describe(event: dict, urls: dict) -> tuple[str | None, str | None]:
    """(error text, external url) for one protocol event; `urls` maps request ids to URLs."""
    method, p = event.get("method"), event.get("params", {})
    if method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
        text = " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", []))
        return f"console.{p['type']}: {text}", None
    if method == "Runtime.exceptionThrown":
        d = p.get("exceptionDetails", {})
        return f"uncaught: {d.get('exception', {}).get('description') or d.get('text')}", None
    if method == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
        entry = p["entry"]
        return f"log: {entry.get('text')} {entry.get('url', '')}".strip(), None
    if method == "Network.loadingFailed" and not p.get("canceled"):
        return f"failed load: {p.get('errorText')} {urls.get(p.get('requestId'), '')}", None
    if method == "Network.requestWillBeSent":
        url = p.get("request", {}).get("url", "")
        if not url.startswith(("file:", "data:", "about:", "blob:")):
            return None, url
    return None, None


def load_page(path: str | Path, screenshot: str | Path | None = None, width: int = 1280,
              evaluate: dict[str, str] | None = None, timeout: float = 60.0) -> PageResult:
    """Loads a local HTML file in headless Chromium with the network cut off.

    Args:
        path: the HTML file (opened as a file:// URL, as a user double-clicking it would).
        screenshot: where to write a full-page PNG (None: no screenshot).
        width: viewport width in CSS pixels.
        evaluate: {name: JavaScript expression} evaluated after the load event.
        timeout: seconds for the whole visit.

    Returns:
        PageResult with errors, external requests, evaluated values and the screenshot path.

    Raises:
        BrowserError: no Chromium found (install Debian's `chromium`), or it failed.
    """
    binary = find_chromium()
    if binary is None:
        raise BrowserError("no Chromium found: install Debian's 'chromium' package "
                           "(apt-get install chromium) or set $CHROMIUM")
    url = Path(path).resolve().as_uri()
    to_chrome_r, to_chrome_w = os.pipe()
    from_chrome_r, from_chrome_w = os.pipe()
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    # Chromium reads commands on fd 3 and writes replies on fd 4.
    def child_fds():
        # Duplicate first so that neither source is clobbered when it already is fd 3 or 4.
        cmd_in, replies_out = os.dup(to_chrome_r), os.dup(from_chrome_w)
        os.dup2(cmd_in, 3)
        os.dup2(replies_out, 4)
    args = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe",
            "--no-first-run", "--no-default-browser-check", "--disable-extensions",
            "--hide-scrollbars", f"--user-data-dir={profile}",
            # Any host name fails to resolve: a page that needs the network shows it.
            "--host-resolver-rules=MAP * ~NOTFOUND", "about:blank"]
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, preexec_fn=child_fds,
                            pass_fds=(3, 4))
    os.close(to_chrome_r)
    os.close(from_chrome_w)
    pipe = _Pipe(proc, to_chrome_w, from_chrome_r, timeout)
    result = PageResult()
    try:
        target = pipe.call("Target.createTarget", url="about:blank")["targetId"]
        session = pipe.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Runtime", "Log", "Network", "Page"):
            pipe.call(f"{domain}.enable", session)
        pipe.call("Emulation.setDeviceMetricsOverride", session, width=width, height=900,
                  deviceScaleFactor=1, mobile=False)
        pipe.call("Page.navigate", session, url=url)
        pipe.wait_for("Page.loadEventFired")
        # A round trip after the load flushes events raised by scripts run at load time.
        for name, expression in (evaluate or {}).items():
            reply = pipe.call("Runtime.evaluate", session, expression=expression,
                              returnByValue=True, awaitPromise=True)
            if "exceptionDetails" in reply:
                raise BrowserError(f"evaluate {name!r}: {reply['exceptionDetails'].get('text')}")
            result.values[name] = reply.get("result", {}).get("value")
        pipe.call("Runtime.evaluate", session, expression="1")
        if screenshot is not None:
            size = pipe.call("Page.getLayoutMetrics", session)["cssContentSize"]
            shot = pipe.call("Page.captureScreenshot", session, format="png",
                             captureBeyondViewport=True,
                             clip={"x": 0, "y": 0, "width": size["width"],
                                   "height": size["height"], "scale": 1})
            result.screenshot = Path(screenshot)
            result.screenshot.write_bytes(base64.b64decode(shot["data"]))
        urls = {e["params"]["requestId"]: e["params"]["request"]["url"] for e in pipe.events
                if e.get("method") == "Network.requestWillBeSent"}
        for event in pipe.events:
            error, external = _describe(event, urls)
            if error:
                result.errors.append(error)
            if external:
                result.external_requests.append(external)
        try:
            pipe.call("Browser.close")
        except BrowserError:
            pass
    finally:
        os.close(to_chrome_w)
        os.close(from_chrome_r)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(profile, ignore_errors=True)
    return result
