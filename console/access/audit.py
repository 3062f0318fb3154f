"""The audit trail of access changes made in the console: the Django admin's own LogEntry rows.

The admin records each of its saves and deletes as a LogEntry (shown under "Recent actions" and on an
object's History page); the console's pages record theirs the same way, so one trail holds both.
"""

from __future__ import annotations

from typing import Any

from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry
from django.db.models import Model

ADDED, CHANGED, DELETED = ADDITION, CHANGE, DELETION


def record(user: Any, obj: Model, action: int, message: str) -> None:
    """One LogEntry for `obj` by `user` (staff): `action` ADDED, CHANGED or DELETED, `message` what changed."""
    if user is None or not getattr(user, "is_authenticated", False):
        return
    # log_actions (Django 5.1+) replaces the deprecated log_action; a plain message is shown as it is.
    LogEntry.objects.log_actions(user.pk, [obj], action, change_message=message, single_object=True)
