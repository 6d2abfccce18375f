#!/usr/bin/env python3
"""Loads the collector dashboard in headless Debian chromium and checks it.

Drives chromium over the DevTools protocol on a pipe (--remote-debugging-pipe,
fds 3/4; Python stdlib only), with flags that keep it off the network and a
fresh profile. Checks: the page loads (HTTP 200), no console error, no
exception, no CSP violation (Log/Runtime events and the securitypolicyviolation
report), every count on the page (class "count") is a number of a stored
release (read from /api/v1/release on the same listener: a value, or the
high end of an interval shown as "<N"), and saves a full-page screenshot.

usage: dashboard_browser.py URL SCREENSHOT.png [--lang de]
"""
import base64
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--no-default-browser-check",
    "--metrics-recording-only", "--disable-domain-reliability", "--hide-scrollbars",
    "--remote-debugging-pipe",
]


def chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    sys.exit("FAIL: chromium not found (scripts/test-dashboard installs Debian chromium)")


class Cdp:
    def __init__(self, args):
        # Chromium reads commands on fd 3 and writes answers on fd 4.
        r_cmd, self.w_cmd = os.pipe()
        self.r_out, w_out = os.pipe()
        os.set_inheritable(r_cmd, True)
        os.set_inheritable(w_out, True)

        def fds():
            os.dup2(r_cmd, 3)
            os.dup2(w_out, 4)

        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(args, preexec_fn=fds, close_fds=False, stdout=subprocess.DEVNULL, stderr=self.log)
        os.close(r_cmd)
        os.close(w_out)
        self.buf = b""
        self.next_id = 0
        self.events = []

    def send(self, method, params=None, session=None):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.w_cmd, json.dumps(msg).encode() + b"\0")
        want = self.next_id
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            m = self.read()
            if m.get("id") == want:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m.get("result", {})
            self.events.append(m)
        raise RuntimeError(f"{method}: no answer")

    def read(self):
        while b"\0" not in self.buf:
            chunk = os.read(self.r_out, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed the pipe: " + self.stderr()[-2000:])
            self.buf += chunk
        msg, self.buf = self.buf.split(b"\0", 1)
        return json.loads(msg)

    def wait_event(self, method, session, timeout=60):
        deadline = time.monotonic() + timeout
        for e in self.events:
            if e.get("method") == method and e.get("sessionId") == session:
                return e
        while time.monotonic() < deadline:
            m = self.read()
            self.events.append(m)
            if m.get("method") == method and m.get("sessionId") == session:
                return m
        raise RuntimeError(f"no {method} event")

    def stderr(self):
        self.log.seek(0)
        return self.log.read().decode("utf-8", "replace")

    def close(self):
        try:
            self.send("Browser.close")
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def get_json(url):
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.loads(r.read())


def released_numbers(base):
    """Every count of every stored release: values, and interval ends."""
    numbers = set()
    for product in get_json(base + "api/v1/products")["products"]:
        q = urllib.parse.quote(product)
        for week in get_json(f"{base}api/v1/weeks?product={q}")["weeks"]:
            r = get_json(f"{base}api/v1/release?product={q}&week={week}")
            numbers.update([r["reports"]["value"], r["reports"]["high"]])
            for cells in r["fields"].values():
                for c in cells:
                    numbers.update([c["value"], c["high"]])
    return numbers


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    url, shot = sys.argv[1], sys.argv[2]
    lang = sys.argv[4] if len(sys.argv) > 4 and sys.argv[3] == "--lang" else "en"
    released = released_numbers(url)
    profile = tempfile.mkdtemp(prefix="optin-chromium-")
    cdp = Cdp([chromium(), *FLAGS, f"--user-data-dir={profile}", f"--lang={lang}", "about:blank"])
    problems = []
    try:
        target = cdp.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = cdp.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            cdp.send(f"{domain}.enable", session=session)
        cdp.send("Network.setExtraHTTPHeaders", {"headers": {"Accept-Language": lang}}, session=session)
        cdp.send("Emulation.setDeviceMetricsOverride", {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False}, session=session)
        cdp.send("Page.navigate", {"url": url}, session=session)
        cdp.wait_event("Page.loadEventFired", session)
        # Everything the page did, including CSP reports, arrives as events.
        cdp.send("Runtime.evaluate", {"expression": "1"}, session=session)
        statuses = [e["params"]["response"]["status"] for e in cdp.events
                    if e.get("method") == "Network.responseReceived" and e.get("sessionId") == session]
        if not statuses or statuses[0] != 200:
            problems.append(f"document status {statuses[:1]}")
        if any(s >= 400 for s in statuses):
            problems.append(f"a resource failed: statuses {statuses}")
        for e in cdp.events:
            m, p = e.get("method"), e.get("params", {})
            if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "warning", "assert"):
                problems.append(f"console {p['type']}: {p.get('args')}")
            elif m == "Runtime.exceptionThrown":
                problems.append(f"exception: {p.get('exceptionDetails', {}).get('text')}")
            elif m == "Log.entryAdded":
                entry = p.get("entry", {})
                text = entry.get("text", "")
                if entry.get("level") in ("error", "warning") or "Content Security Policy" in text or "Refused to" in text:
                    problems.append(f"log {entry.get('level')}/{entry.get('source')}: {text}")
            elif m == "Network.loadingFailed":
                problems.append(f"load failed: {p.get('errorText')} {p.get('blockedReason', '')}")
        # The stylesheet must actually apply (a CSP block would leave defaults).
        bg = cdp.send("Runtime.evaluate", {"expression": "getComputedStyle(document.querySelector('header')).backgroundColor", "returnByValue": True}, session=session)
        if bg.get("result", {}).get("value") != "rgb(29, 47, 79)":
            problems.append(f"stylesheet not applied (header background {bg.get('result', {}).get('value')})")
        counts = cdp.send("Runtime.evaluate", {"expression": "JSON.stringify([...document.querySelectorAll('.count')].map(d => [d.textContent, d.getAttribute('value')]))", "returnByValue": True}, session=session)
        counts = json.loads(counts["result"]["value"])
        if not counts:
            problems.append("no counts on the page")
        for text, value in counts:
            n = text.replace(",", "").lstrip("<")
            if not re.fullmatch(r"\d+", n) or int(n) not in released:
                problems.append(f"count {text!r} is not a number of a stored release")
            if value is not None and (not re.fullmatch(r"\d+", value) or int(value) not in released):
                problems.append(f"count value {value!r} is not a number of a stored release")
        text = cdp.send("Runtime.evaluate", {"expression": "document.body.innerText", "returnByValue": True}, session=session)["result"]["value"]
        if lang == "de" and "Berichte pro Woche" not in text:
            problems.append("German page expected (Accept-Language: de)")
        # Full page screenshot.
        size = cdp.send("Runtime.evaluate", {"expression": "JSON.stringify([document.documentElement.scrollWidth, document.documentElement.scrollHeight])", "returnByValue": True}, session=session)
        w, h = json.loads(size["result"]["value"])
        cdp.send("Emulation.setDeviceMetricsOverride", {"width": 1280, "height": min(h, 6000), "deviceScaleFactor": 1, "mobile": False}, session=session)
        png = cdp.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}, session=session)["data"]
        with open(shot, "wb") as f:
            f.write(base64.b64decode(png))
        print(f"dashboard: {len(counts)} counts checked against {len(released)} released numbers, {len(statuses)} response(s), screenshot {shot} ({w}x{min(h, 6000)})")
    finally:
        cdp.close()
        shutil.rmtree(profile, ignore_errors=True)
    if problems:
        for p in problems:
            print("FAIL:", p)
        sys.exit(1)
    print("PASS: dashboard in chromium: no console error, no CSP violation, every count from a stored release")


if __name__ == "__main__":
    main()
