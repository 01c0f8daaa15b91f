"""Measure a built book page's layout in headless Chromium (used by ``test_book_browser.py``).

:class:`Browser` drives one headless Chromium through the DevTools protocol over a pipe
(``--remote-debugging-pipe``: no port, no network, no extra package). For each page and width it
sets the viewport (``Emulation.setDeviceMetricsOverride``, so 400 px is really 400 px: a headless
window cannot be narrower than 500 px), loads the page, waits for MathJax to finish typesetting
and runs :data:`MEASURE_JS` in it, which reports the widths that matter. It also takes
screenshots of the same layout.

:func:`problems` turns a measurement into readable complaints:

* at every width: the page itself never scrolls sideways, nothing sticks out of the article
  column unless it sits inside a horizontal scroll box, no equation is wider than its box, and the
  right-hand table of contents does not overflow;
* ``strict`` (a desk, 1280 px): no table is wider than its container, and nothing in the article
  scrolls sideways except a code block (``pre``) holding a long command line;
* otherwise (a phone, 400 px): nothing but a box holding a table scrolls sideways (code blocks
  wrap).
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--disable-extensions", "--mute-audio"]
TOLERANCE = 1.5  # px: sub-pixel rounding of widths

READY_JS = r"""
(async function () {
  // wait until MathJax (if the page loads it) has typeset, and the fonts are in
  for (var i = 0; i < 100 && document.querySelector("script[src*='mathjax']") &&
       !(window.MathJax && MathJax.startup && MathJax.startup.promise); i++)
    await new Promise(function (r) { setTimeout(r, 50); });
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) await MathJax.startup.promise;
  if (document.fonts) await document.fonts.ready;
  await new Promise(function (r) { setTimeout(r, 200); });
  return true;
})()
"""

MEASURE_JS = r"""
(function () {
  function clipper(el) {  // nearest ancestor that clips or scrolls sideways
    for (var e = el.parentElement; e && e !== document.body; e = e.parentElement) {
      var ox = getComputedStyle(e).overflowX;
      if (ox === "auto" || ox === "scroll" || ox === "hidden" || ox === "clip") return e;
    }
    return null;
  }
  function label(el) {
    var t = el.closest("table") || el;
    var s = el.tagName.toLowerCase() + (el.id ? "#" + el.id : "");
    var box = clipper(t) || t;
    var prev = box.previousElementSibling;
    if (prev && prev.classList.contains("ddpmdp-table-caption")) s += " [" + prev.textContent.slice(0, 60) + "]";
    var sec = el.closest("section");
    var h = sec && sec.querySelector("h1, h2, h3");
    if (h) s += " (section: " + h.textContent.replace(/#$/, "") + ")";
    return (s + " " + (el.textContent || "")).replace(/\s+/g, " ").slice(0, 200);
  }
  var art = document.querySelector("article.bd-article") || document.body;
  var ar = art.getBoundingClientRect(), cs = getComputedStyle(art);
  var left = ar.left + parseFloat(cs.paddingLeft), right = ar.right - parseFloat(cs.paddingRight);
  var out = {viewport: window.innerWidth, page_scroll: document.documentElement.scrollWidth,
             height: document.documentElement.scrollHeight,
             content: [left, right], tables: [], math: [], scrollers: [], sticking_out: [], toc: []};
  art.querySelectorAll("table").forEach(function (t) {
    var r = t.getBoundingClientRect(), box = clipper(t);
    out.tables.push({label: label(t), width: r.width, top: r.top + scrollY, bottom: r.bottom + scrollY,
                     avail: box ? box.clientWidth : right - left,
                     overflow: box ? box.scrollWidth - box.clientWidth : Math.max(0, r.right - right)});
  });
  art.querySelectorAll("mjx-container[display='true']").forEach(function (m) {
    out.math.push({label: label(m), width: m.scrollWidth, avail: m.clientWidth,
                   fits: m.getBoundingClientRect().right <= right + 1.5});
  });
  art.querySelectorAll("*").forEach(function (e) {
    var st = getComputedStyle(e);
    if ((st.overflowX === "auto" || st.overflowX === "scroll") && e.scrollWidth > e.clientWidth + 1)
      out.scrollers.push({label: label(e), overflow: e.scrollWidth - e.clientWidth, tag: e.tagName.toLowerCase(),
                          has_table: e.tagName === "TABLE" || !!e.querySelector("table"),
                          code: e.tagName === "PRE"});
    if (e.closest("mjx-container") && e.tagName !== "MJX-CONTAINER") return;  // an equation is judged whole
    var r = e.getBoundingClientRect();
    if (r.width === 0 || r.height === 0 || st.visibility === "hidden" || st.position === "fixed") return;
    if (r.right <= right + 1.5 && r.left >= left - 1.5) return;
    var c = clipper(e);
    if (c && art.contains(c)) return;  // inside a scroll box of the article, which is judged itself
    out.sticking_out.push({label: label(e), right: r.right, left: r.left});
  });
  var toc = document.querySelector(".bd-sidebar-secondary");
  if (toc && toc.getBoundingClientRect().width > 0 && getComputedStyle(toc).visibility !== "hidden") {
    var tr = toc.getBoundingClientRect();
    if (toc.scrollWidth > toc.clientWidth + 1)
      out.toc.push({label: "the sidebar scrolls sideways", overflow: toc.scrollWidth - toc.clientWidth});
    toc.querySelectorAll("a").forEach(function (a) {
      var r = a.getBoundingClientRect();
      if (r.width > 0 && r.right > tr.right + 1.5) out.toc.push({label: label(a), overflow: r.right - tr.right});
    });
  }
  return out;
})()
"""

PLANT_JS = r"""
(function () {
  var art = document.querySelector("article.bd-article");
  var cells = "";
  for (var i = 0; i < 14; i++) cells += "<td>12.391 ± 0.445</td>";
  var div = document.createElement("div");
  div.innerHTML = "<table id='planted-wide-table' class='table'><tr>" + cells + "</tr></table>";
  art.appendChild(div);
  return true;
})()
"""


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Browser:
    """One headless Chromium and one tab, driven over ``--remote-debugging-pipe``."""

    def __init__(self, timeout: float = 60.0) -> None:
        exe = chromium()
        assert exe is not None, "chromium is not installed"
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="ddpmdp-chromium-")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        def child_fds() -> None:  # the browser reads commands on fd 3 and writes replies on fd 4
            os.dup2(to_browser_r, 3)
            os.dup2(from_browser_w, 4)

        self.proc = subprocess.Popen([exe, *FLAGS, "--remote-debugging-pipe", f"--user-data-dir={self.profile}",
                                      "about:blank"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, pass_fds=(3, 4), preexec_fn=child_fds)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buf = b""
        self._id = 0
        self.events: list[dict] = []
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.send("Page.enable", session=True)

    def _read(self) -> dict:
        deadline = time.monotonic() + self.timeout
        while b"\0" not in self._buf:
            if time.monotonic() > deadline:
                raise TimeoutError("no answer from chromium")
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed the pipe")
            self._buf += chunk
        msg, self._buf = self._buf.split(b"\0", 1)
        return json.loads(msg)

    def send(self, method: str, session: bool = False, **params: Any) -> dict:
        self._id += 1
        msg: dict[str, Any] = {"id": self._id, "method": method, "params": params}
        if session:
            msg["sessionId"] = self.session
        os.write(self._to_browser, json.dumps(msg).encode() + b"\0")
        while True:
            reply = self._read()
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def _wait_event(self, method: str) -> None:
        if any(e.get("method") == method for e in self.events):
            return
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            e = self._read()
            if e.get("method") == method:
                return
            self.events.append(e)
        raise TimeoutError(f"{method} did not come")

    def open(self, page: Path, width: int, height: int = 900) -> None:
        """Load ``page`` in a ``width`` × ``height`` px viewport and wait for its load event and for
        MathJax to finish typesetting (:data:`READY_JS`)."""
        self.send("Emulation.setDeviceMetricsOverride", session=True, width=width, height=height,
                  deviceScaleFactor=1, mobile=False)
        self.events.clear()
        self.send("Page.navigate", session=True, url=page.resolve().as_uri())
        self._wait_event("Page.loadEventFired")
        self.evaluate(READY_JS)

    def dom(self) -> str:
        """The open page's DOM as HTML (after its scripts and MathJax have run)."""
        return str(self.evaluate("document.documentElement.outerHTML"))

    def evaluate(self, expression: str) -> Any:
        res = self.send("Runtime.evaluate", session=True, expression=expression, awaitPromise=True,
                        returnByValue=True)
        if "exceptionDetails" in res:
            raise RuntimeError(f"script failed: {res['exceptionDetails']}")
        return res["result"].get("value")

    def measure(self) -> dict:
        """The layout of the open page (see :data:`MEASURE_JS`)."""
        return self.evaluate(MEASURE_JS)

    def screenshot(self, path: Path, width: int, max_height: int = 12000) -> Path:
        """The whole open page (up to ``max_height`` px) as a PNG: the viewport is stretched to the
        page's height for the capture (so sticky sidebars stay where a reader sees them), then set
        back to ``width`` × 900."""
        height = min(int(self.evaluate("document.documentElement.scrollHeight")), max_height)
        self.send("Emulation.setDeviceMetricsOverride", session=True, width=width, height=height,
                  deviceScaleFactor=1, mobile=False)
        self.evaluate("new Promise(function (r) { setTimeout(r, 300); })")
        data = self.send("Page.captureScreenshot", session=True, format="png")["data"]
        self.send("Emulation.setDeviceMetricsOverride", session=True, width=width, height=900,
                  deviceScaleFactor=1, mobile=False)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._to_browser, self._from_browser):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self.profile, ignore_errors=True)


def problems(m: dict, strict: bool) -> list[str]:
    """What does not fit in measurement ``m`` (see the module docstring)."""
    out = []
    if m["page_scroll"] > m["viewport"] + TOLERANCE:
        out.append(f"the page scrolls sideways ({m['page_scroll']} px in a {m['viewport']} px window)")
    for s in m["sticking_out"]:
        out.append(f"sticks out of the text column (left {s['left']:.0f}, right {s['right']:.0f} px; column "
                   f"{m['content'][0]:.0f}–{m['content'][1]:.0f}): {s['label']}")
    for t in m["toc"]:
        out.append(f"right-hand table of contents overflows by {t['overflow']:.0f} px: {t['label']}")
    for e in m["math"]:
        if e["width"] > e["avail"] + TOLERANCE or not e["fits"]:
            out.append(f"equation wider than its box ({e['width']} px in {e['avail']} px): {e['label']}")
    if strict:
        for t in m["tables"]:
            if t["overflow"] > TOLERANCE or t["width"] > t["avail"] + TOLERANCE:
                out.append(f"table wider than its container ({t['width']:.0f} px in {t['avail']:.0f} px; "
                           f"{t['overflow']:.0f} px hidden): {t['label']}")
    for s in m["scrollers"]:
        allowed = s["code"] if strict else s["has_table"]
        if not allowed:
            out.append(f"scrolls sideways by {s['overflow']} px: {s['label']}")
    return out
