#!/usr/bin/env python3
"""Drive headless Chromium through a page, for the services' browser tests.

Usage: browser.py CHROMIUM PROFILE_DIR < steps.json > results.json

Talks the DevTools protocol over --remote-debugging-pipe (file descriptors 3 and 4), so it
needs nothing beyond Python's standard library. Steps, run in order, each answered by one
entry of the JSON list printed at the end:
  {"go": URL}                     navigate and wait for the load event
  {"fill": {SELECTOR: VALUE}}      set input values
  {"submit": SELECTOR}            submit that form and wait for the next page's load event
  {"text": true}                  answer document.body.innerText
  {"eval": JS}                    answer the value of a JavaScript expression
  {"url": true}                   answer the page's URL
  {"shot": PATH, "width": W, "height": H}  write a PNG screenshot of the page
Every wait is bounded (STEP_WAIT_S); a step that times out ends the run with exit 1.
"""
import base64
import json
import os
import select
import subprocess
import sys
import time

STEP_WAIT_S = 30


class Browser:
    def __init__(self, chromium, profile):
        to_chrome_r, self.to_chrome = os.pipe()
        self.from_chrome, from_chrome_w = os.pipe()

        def fds():
            # Chromium reads commands on fd 3 and writes answers on fd 4. The pipes may sit
            # on 3 and 4 already (with close-on-exec): copy them out of the way first, then
            # onto 3 and 4 (dup2's copies are inherited).
            r, w = os.dup(to_chrome_r), os.dup(from_chrome_w)
            os.dup2(r, 3)
            os.dup2(w, 4)

        self.proc = subprocess.Popen(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu",
             "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--no-first-run", "--remote-debugging-pipe",
             f"--user-data-dir={profile}", "about:blank"],
            preexec_fn=fds, close_fds=False,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self.buf = b""
        self.next_id = 0
        self.events = []
        targets = self.call("Target.getTargets")["targetInfos"]
        page = next(t for t in targets if t["type"] == "page")
        self.session = self.call("Target.attachToTarget",
                                 {"targetId": page["targetId"], "flatten": True})["sessionId"]
        self.call("Page.enable", session=True)
        self.call("Runtime.enable", session=True)

    def send(self, method, params=None, session=False):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = self.session
        os.write(self.to_chrome, json.dumps(msg).encode() + b"\0")
        return self.next_id

    def read(self, deadline):
        while b"\0" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("chromium did not answer in time")
            ready, _, _ = select.select([self.from_chrome], [], [], left)
            if ready:
                chunk = os.read(self.from_chrome, 65536)
                if not chunk:
                    raise EOFError("chromium closed its pipe")
                self.buf += chunk
        msg, self.buf = self.buf.split(b"\0", 1)
        return json.loads(msg)

    def call(self, method, params=None, session=False):
        wanted = self.send(method, params, session)
        deadline = time.monotonic() + STEP_WAIT_S
        while True:
            msg = self.read(deadline)
            if msg.get("id") == wanted:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg["method"])

    def wait_event(self, name):
        deadline = time.monotonic() + STEP_WAIT_S
        while name not in self.events:
            msg = self.read(deadline)
            if "method" in msg:
                self.events.append(msg["method"])
        self.events.clear()

    def eval(self, expression):
        r = self.call("Runtime.evaluate",
                      {"expression": expression, "returnByValue": True}, session=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expression}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def close(self):
        self.proc.kill()
        self.proc.wait(timeout=STEP_WAIT_S)


def main():
    chromium, profile = sys.argv[1], sys.argv[2]
    steps = json.load(sys.stdin)
    b = Browser(chromium, profile)
    out = []
    try:
        for step in steps:
            if "go" in step:
                b.events.clear()
                b.call("Page.navigate", {"url": step["go"]}, session=True)
                b.wait_event("Page.loadEventFired")
                out.append(None)
            elif "fill" in step:
                for selector, value in step["fill"].items():
                    b.eval(f"document.querySelector({json.dumps(selector)}).value = {json.dumps(value)}")
                out.append(None)
            elif "submit" in step:
                b.events.clear()
                b.eval(f"document.querySelector({json.dumps(step['submit'])}).submit()")
                b.wait_event("Page.loadEventFired")
                out.append(None)
            elif "text" in step:
                out.append(b.eval("document.body.innerText"))
            elif "eval" in step:
                out.append(b.eval(step["eval"]))
            elif "url" in step:
                out.append(b.eval("location.href"))
            elif "shot" in step:
                b.call("Emulation.setDeviceMetricsOverride",
                       {"width": step.get("width", 1000), "height": step.get("height", 800),
                        "deviceScaleFactor": 1, "mobile": False}, session=True)
                data = b.call("Page.captureScreenshot", {"format": "png"}, session=True)["data"]
                with open(step["shot"], "wb") as f:
                    f.write(base64.b64decode(data))
                out.append(None)
            else:
                raise ValueError(f"unknown step {step}")
    except Exception as e:  # the test prints what happened up to here
        print(json.dumps({"done": out, "error": f"step {len(out)}: {e}"}))
        b.close()
        sys.exit(1)
    b.close()
    print(json.dumps({"done": out}))


if __name__ == "__main__":
    main()
