"""The chat writers of processes sharing one SQLite file take turns on a lock that wakes the next at once."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest
from django.db import connection

from console.chat.orm import Writer, WriteTurn, sqlite_turn_path
from console.models import Conversation

pytestmark = pytest.mark.django_db(transaction=True)


def _taken(path: Path) -> bool:
    """Whether another open file (as another process's writer would hold) has the turn now."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def test_the_writer_holds_the_turn_while_its_transaction_is_open_and_not_after(tmp_path: Path) -> None:
    lock = tmp_path / "lorebot.sqlite3-writer-lock"
    writer = Writer(turn=WriteTurn(lambda: str(lock)))

    def store() -> bool:
        Conversation.objects.create(surface="web", external_key="k", user_key="u")
        return _taken(lock)

    try:
        assert writer.submit(store).result(timeout=30) is True
    finally:
        writer.close()
    assert Conversation.objects.filter(external_key="k").exists()
    assert _taken(lock) is False  # released at the commit: another process's writer goes on at once


def test_a_failed_batch_gives_the_turn_back(tmp_path: Path) -> None:
    lock = tmp_path / "db.sqlite3-writer-lock"
    writer = Writer(turn=WriteTurn(lambda: str(lock)))

    def fail() -> None:
        raise ValueError("refused")

    try:
        with pytest.raises(ValueError):
            writer.submit(fail).result(timeout=30)
        assert writer.submit(lambda: _taken(lock)).result(timeout=30) is True
    finally:
        writer.close()
    assert _taken(lock) is False


def test_only_a_sqlite_file_has_a_turn_lock(monkeypatch: pytest.MonkeyPatch) -> None:
    if connection.vendor != "sqlite":
        assert sqlite_turn_path() is None
        return
    monkeypatch.setitem(connection.settings_dict, "NAME", "/data/lorebot.sqlite3")
    assert sqlite_turn_path() == "/data/lorebot.sqlite3-writer-lock"
    for memory in (":memory:", "file:memorydb_default?mode=memory&cache=shared"):
        monkeypatch.setitem(connection.settings_dict, "NAME", memory)
        assert sqlite_turn_path() is None
