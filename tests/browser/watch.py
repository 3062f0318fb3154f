"""What a page reports that a person would not see: CSP violations, console errors, uncaught exceptions."""

from __future__ import annotations

from typing import Any

# Runs in every document before its own scripts (Playwright injects it, outside the page's CSP).
_LISTEN = """
window.__problems = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__problems.push(`CSP ${e.effectiveDirective} blocked ${e.blockedURI || "inline"} at ${e.documentURI}`);
});
"""
# One turn of the page's event loop after `load`: violation events are queued as tasks.
_SETTLE = "() => new Promise((done) => requestAnimationFrame(() => setTimeout(() => done(window.__problems || []))))"


def watch(page: Any) -> list[str]:
    """A list that fills with the page's console errors and uncaught exceptions as they happen."""
    problems: list[str] = []
    page.add_init_script(_LISTEN)
    page.on("console", lambda msg: problems.append(f"console.{msg.type}: {msg.text}") if msg.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(f"uncaught: {exc}"))
    return problems


def problems_on(page: Any, console: list[str]) -> list[str]:
    """Everything wrong on the current document so far: its CSP violations and the console's errors."""
    page.wait_for_load_state("load")
    return [*page.evaluate(_SETTLE), *console]
