"""Logging for ragcore's own command-line tools (eval, benchmarks): warnings only, to stderr.

Servers configure structlog themselves (console/ops/logs.py); a CLI must keep stdout for
its results, and structlog's unconfigured default prints every event there.
"""

from __future__ import annotations

import logging
import sys

import structlog


def quiet_cli_logging() -> None:
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )
