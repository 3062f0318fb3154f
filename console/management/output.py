"""What Lorebot's commands print: human lines on stdout; logs on stderr, and only errors unless asked (-v 2)."""

from __future__ import annotations

import logging

from django.conf import settings

# verbosity → the most the root logger lets through: -v 0 nothing, -v 1 (the default) errors only,
# -v 2 the configured LOG_LEVEL, -v 3 everything.
_LEVELS = {0: logging.CRITICAL + 1, 1: logging.ERROR}


def logs_for_command(verbosity: int) -> None:
    """Keeps a command's logs (JSON lines on stderr) out of the way of what it tells the user on stdout."""
    if verbosity >= 3:
        level = logging.DEBUG
    elif verbosity == 2:
        level = logging.getLevelName(settings.LOG_LEVEL)
        level = level if isinstance(level, int) else logging.INFO
    else:
        level = _LEVELS.get(verbosity, logging.ERROR)
    logging.getLogger().setLevel(level)
