"""Answers orphaned by a dead process: finished as failed, with the text they had, by whoever notices first.

An answer in progress names the process writing it (`process_token`: host, pid and the pid's
start time, so a recycled pid is not mistaken for the old process); the chat service stores its
text every few seconds, and the process's sweeper thread beats for all of its answers. A process
that is killed would leave its answer "in progress" for good, so every process that answers
sweeps (the web server from its start): an answer whose heartbeat is older than
CHAT_ANSWER_STALE_SECONDS, or whose owner is a process on this host that no longer runs (noticed
at once after a restart), is marked `interrupted` and keeps its partial text.
"""

from __future__ import annotations

import os
import socket
import threading
from datetime import timedelta
from functools import cache
from pathlib import Path

import structlog
from django.conf import settings
from django.db import close_old_connections
from django.db.models import Q
from django.utils import timezone

from console.models import Message
from ragcore.metrics import PIPELINE_ERRORS

log = structlog.get_logger(__name__, component="chat")


def _start_ticks(pid: int) -> str:
    """When the process started, in clock ticks since boot (Linux); "" where /proc is not there."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    # Field 22; the command name (field 2) is in parentheses and may hold spaces.
    return stat.rsplit(")", 1)[1].split()[19]


@cache
def _host() -> str:
    return socket.gethostname()


@cache
def _token(pid: int) -> str:
    return f"{_host()}:{pid}:{_start_ticks(pid)}"


def process_token() -> str:
    """This process, as stored on the answers it writes."""
    # Cached per pid (a forked child has its own): reading /proc on every question was ~1.7 ms of its CPU.
    return _token(os.getpid())


def is_dead(owner: str) -> bool:
    """Whether `owner` is certainly gone: a process on this host whose pid no longer runs (or runs another program)."""
    parts = owner.rsplit(":", 2)  # host:pid:start
    if len(parts) != 3 or parts[0] != _host() or not parts[1].isdigit() or not parts[2]:
        return False  # another host's, or no start time to compare: only its heartbeat can tell
    return _start_ticks(int(parts[1])) != parts[2]


def heartbeat_seconds() -> float:
    """How often this process says its answers in progress are alive (and stores their text): well inside the window."""
    return max(0.5, settings.CHAT_ANSWER_STALE_SECONDS / 6)


def beat() -> int:
    """Marks every answer this process is writing as alive; returns how many."""
    return Message.objects.filter(owner=process_token(), error=Message.IN_PROGRESS).update(heartbeat_at=timezone.now())


def sweep() -> int:
    """Finishes every orphaned answer as `interrupted`, keeping its text; returns how many."""
    cutoff = timezone.now() - timedelta(seconds=settings.CHAT_ANSWER_STALE_SECONDS)
    in_progress = Message.objects.filter(role=Message.Role.ASSISTANT, error=Message.IN_PROGRESS)
    stale = Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, created_at__lt=cutoff)
    neighbours = (in_progress.filter(owner__startswith=f"{_host()}:").exclude(owner=process_token())
                  .values_list("owner", flat=True).distinct())
    dead = [owner for owner in set(neighbours) if is_dead(owner)]
    finished = 0
    for message in in_progress.filter(stale | Q(owner__in=dead)):
        if message.mark_orphaned():
            finished += 1
            log.warning("chat.answer_orphaned", message_id=message.pk, conversation_id=message.conversation_id,
                        owner=message.owner, chars=len(message.text))
    if finished:
        PIPELINE_ERRORS.labels("chat").inc(finished)
    return finished


class Sweeper:
    """A daemon thread: a heartbeat for this process's answers and a sweep, at start and every heartbeat_seconds()."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stopped: threading.Event | None = None  # set while a thread runs; each thread waits on its own

    @property
    def running(self) -> bool:
        return self._stopped is not None and not self._stopped.is_set()

    def start(self) -> bool:
        with self._lock:
            if self._stopped is not None:
                return False
            self._stopped = threading.Event()
        threading.Thread(target=self._run, args=(self._stopped,), name="lorebot-orphan-sweep", daemon=True).start()
        return True

    def stop(self) -> None:
        """Ends the thread at its next wake-up; a later start() begins a new one."""
        with self._lock:
            if self._stopped is not None:
                self._stopped.set()
                self._stopped = None

    def _run(self, stopped: threading.Event) -> None:
        while True:
            try:
                beat()  # first: this process's own answers are never taken for orphans
                sweep()
            except Exception:  # the database is down: next time
                log.warning("chat.orphan_sweep_failed", exc_info=True)
            try:
                close_old_connections()
            except Exception:  # closing a broken connection must not end the thread either
                log.warning("chat.orphan_sweep_failed", exc_info=True)
            if stopped.wait(heartbeat_seconds()):
                return


sweeper = Sweeper()


def start_sweeper() -> bool:
    """Starts this process's sweeper: the web server at start, any process when it first answers.

    CHAT_ANSWER_STALE_SECONDS=0 turns it off (the test suite's own process).
    """
    return settings.CHAT_ANSWER_STALE_SECONDS > 0 and sweeper.start()
