"""GIL_SWITCH_INTERVAL_MS: what a web process (console.asgi, as daphne loads it) makes of it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
_PRINT = "import sys, console.asgi; print(sys.getswitchinterval())"


def _web_process(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "console.settings", "RAG_DATA_DIR": str(tmp_path),
            "PYTHONPATH": str(REPO), "WARMUP_ON_START": "False", "CHAT_ANSWER_STALE_SECONDS": "0",
            "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-c", _PRINT], env={**base, **env}, cwd=REPO, capture_output=True,
                          text=True, timeout=120, check=False)


def test_a_web_process_hands_the_gil_over_after_half_a_millisecond_unless_told_otherwise(tmp_path: Path) -> None:
    done = _web_process(tmp_path)
    assert done.returncode == 0, done.stderr
    assert float(done.stdout.split()[-1]) == 0.0005
    done = _web_process(tmp_path, GIL_SWITCH_INTERVAL_MS="5")
    assert float(done.stdout.split()[-1]) == 0.005, done.stderr


def test_a_bad_interval_stops_start_up_naming_the_variable(tmp_path: Path) -> None:
    for value in ("fast", "0", "-1"):
        done = _web_process(tmp_path, GIL_SWITCH_INTERVAL_MS=value)
        assert done.returncode != 0
        assert "ImproperlyConfigured: GIL_SWITCH_INTERVAL_MS must" in done.stderr, done.stderr
