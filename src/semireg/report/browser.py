"""Open a page in headless Chromium and say what a reader would see go wrong: console errors,
uncaught exceptions, failed loads, images that did not decode. Optionally save a screenshot.

It speaks the DevTools protocol over `--remote-debugging-pipe` (JSON messages ending in NUL on
file descriptors 3 and 4), so it needs nothing but the `chromium` binary: no driver, no
websocket package. Used by the report tests and by `semireg report --check`.
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
from typing import Any

from ..errors import SemiregError

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")


class BrowserError(SemiregError):
    """No browser, or it did not answer."""


def find_browser() -> str | None:
    env = os.environ.get("SEMIREG_CHROMIUM")
    if env:
        return env
    return next((p for p in map(shutil.which, BROWSERS) if p), None)


@dataclass
class PageCheck:
    url: str
    errors: list[str] = field(default_factory=list)  # console errors, exceptions, failed loads
    images: list[dict[str, Any]] = field(default_factory=list)  # per <img>: complete, naturalWidth, alt
    title: str = ""

    @property
    def broken_images(self) -> list[dict[str, Any]]:
        return [i for i in self.images if not i["complete"] or i["naturalWidth"] == 0]

    @property
    def ok(self) -> bool:
        return not self.errors and not self.broken_images


class _Pipe:
    def __init__(self, proc: subprocess.Popen, to_browser: int, from_browser: int) -> None:
        self.proc, self.out, self.inp = proc, to_browser, from_browser
        self.buffer = b""
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def send(
        self, method: str, params: dict[str, Any] | None = None, session: str | None = None, timeout: float = 30.0
    ) -> dict[str, Any]:
        self.next_id += 1
        msg: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.out, json.dumps(msg).encode() + b"\0")
        while True:
            reply = self._read(timeout)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_event(self, method: str, timeout: float) -> dict[str, Any]:
        for i, ev in enumerate(self.events):
            if ev.get("method") == method:
                return self.events.pop(i)
        while True:
            ev = self._read(timeout)
            if ev.get("method") == method:
                return ev
            self.events.append(ev)

    def _read(self, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while b"\0" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.inp], [], [], left)[0]:
                raise BrowserError(f"no answer from the browser in {timeout:.0f} s")
            chunk = os.read(self.inp, 1 << 20)
            if not chunk:
                raise BrowserError(f"the browser exited (code {self.proc.poll()})")
            self.buffer += chunk
        raw, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(raw)


def start_browser(binary: str, profile: str) -> tuple[subprocess.Popen, int, int]:
    """Headless Chromium speaking the DevTools protocol over a pipe: (process, fd to write commands
    to, fd to read answers from)."""
    to_browser_r, to_browser_w = os.pipe()
    from_browser_r, from_browser_w = os.pipe()
    args = [
        binary,
        "--headless",
        "--remote-debugging-pipe",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        "about:blank",
    ]

    def wire_fds() -> None:  # the browser reads commands on fd 3 and writes answers on fd 4
        # Through fds far above 4 first, so that neither end is clobbered by the other's dup2, and
        # dup2 onto 3 and 4 always duplicates (a dup2 of an fd onto itself would keep close-on-exec).
        os.dup2(to_browser_r, 200, inheritable=False)
        os.dup2(from_browser_w, 201, inheritable=False)
        os.dup2(200, 3)
        os.dup2(201, 4)

    # close_fds=False keeps the dup2'd (inheritable) fds 3 and 4; Python's own fds are not
    # inheritable (PEP 446), so nothing else leaks into the browser.
    proc = subprocess.Popen(
        args,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=wire_fds,
        close_fds=False,
    )
    os.close(to_browser_r)
    os.close(from_browser_w)
    return proc, to_browser_w, from_browser_r


def check_page(
    path: str | Path, screenshot: str | Path | None = None, width: int = 1200, timeout: float = 60.0
) -> PageCheck:
    """Load `path` in headless Chromium; collect errors and the state of every image."""
    binary = find_browser()
    if binary is None:
        raise BrowserError("no Chromium found (install Debian's `chromium`, or set $SEMIREG_CHROMIUM)")
    url = Path(path).resolve().as_uri()
    profile = tempfile.mkdtemp(prefix="semireg-chromium-")
    proc, to_browser_w, from_browser_r = start_browser(binary, profile)
    pipe = _Pipe(proc, to_browser_w, from_browser_r)
    check = PageCheck(url=url)
    try:
        target = pipe.send("Target.createTarget", {"url": "about:blank"}, timeout=timeout)["targetId"]
        session = pipe.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            pipe.send(f"{domain}.enable", session=session)
        pipe.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": False},
            session=session,
        )
        pipe.send("Page.navigate", {"url": url}, session=session)
        pipe.wait_event("Page.loadEventFired", timeout)
        state = pipe.send(
            "Runtime.evaluate",
            {
                "returnByValue": True,
                "expression": (
                    "JSON.stringify({title: document.title, images: Array.from(document.images).map(i => "
                    "({complete: i.complete, naturalWidth: i.naturalWidth, alt: i.alt}))})"
                ),
            },
            session=session,
        )
        page = json.loads(state["result"]["value"])
        check.title, check.images = page["title"], page["images"]
        if screenshot is not None:
            metrics = pipe.send("Page.getLayoutMetrics", session=session)
            height = int(metrics.get("cssContentSize", metrics.get("contentSize", {})).get("height", 900))
            shot = pipe.send(
                "Page.captureScreenshot",
                {
                    "format": "png",
                    "captureBeyondViewport": True,
                    "clip": {"x": 0, "y": 0, "width": width, "height": min(height, 6000), "scale": 1},
                },
                session=session,
            )
            Path(screenshot).write_bytes(base64.b64decode(shot["data"]))
        check.errors = _errors(pipe.events)
    finally:
        try:
            pipe.send("Browser.close", timeout=5)
        except (BrowserError, OSError):
            pass
        os.close(to_browser_w)
        os.close(from_browser_r)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(profile, ignore_errors=True)
    return check


def _errors(events: list[dict[str, Any]]) -> list[str]:
    out = []
    for ev in events:
        method, p = ev.get("method"), ev.get("params", {})
        if method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            out.append("console: " + " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", [])))
        elif method == "Runtime.exceptionThrown":
            out.append("exception: " + p.get("exceptionDetails", {}).get("text", ""))
        elif method == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            entry = p["entry"]
            out.append(f"log: {entry.get('text', '')} {entry.get('url', '')}".strip())
        elif method == "Network.loadingFailed":
            out.append(f"load failed: {p.get('errorText', '')}")
    return out
