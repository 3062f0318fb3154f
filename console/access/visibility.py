"""Who may see what: the collection keys a Lorebot user may search, and whether they may open a document.

Staff (active `is_staff`, the console's admins) see every collection, in the console and in the chat.
Everyone else sees the collections open to everyone, plus those granted to one of their groups.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from django.db import connection
from django.db.models import Q

from console.models import Collection, Document
from console.rows import sql_names

_CONSOLE_DOCUMENT = re.compile(r"doc-(\d+)")  # Document.engine_id


def sees_everything(user: Any) -> bool:
    """Staff and superusers: the people who run the console read every document anyway."""
    return bool(user is not None and getattr(user, "is_authenticated", False) and user.is_active
                and (user.is_staff or user.is_superuser))


def _with_default(keys: frozenset[str]) -> frozenset[str]:
    # The default collection is open to everyone until someone restricts it, even before its row exists
    # (a database emptied by hand or by a test): its documents never vanish for want of a row.
    if Collection.DEFAULT_KEY in keys or Collection.objects.filter(key=Collection.DEFAULT_KEY).exists():
        return keys
    return keys | {Collection.DEFAULT_KEY}


def everyone_keys() -> frozenset[str]:
    """The collections anyone may search: unlinked DMs, unconfigured channels, members without groups."""
    return _with_default(frozenset(Collection.objects.filter(visibility=Collection.Visibility.EVERYONE)
                                   .values_list("key", flat=True)))


def all_keys() -> frozenset[str]:
    # Read on every question a staff member asks (its answer records what it searched), so as SQL: the ORM
    # spent ~0.35 ms of CPU building this one-column read, which runs in under 0.1 ms.
    table, key = sql_names(Collection, "key")
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {key} FROM {table}")
        return _with_default(frozenset(key for (key,) in cursor.fetchall()))


def visible_keys(user: Any) -> frozenset[str] | None:
    """The collection keys `user` may search; None means all of them (staff)."""
    if sees_everything(user):
        return None
    if user is None or not getattr(user, "is_authenticated", False) or not user.is_active:
        return everyone_keys()
    granted = Q(visibility=Collection.Visibility.EVERYONE) | Q(visibility=Collection.Visibility.GROUPS,
                                                              groups__in=user.groups.all())
    return _with_default(frozenset(Collection.objects.filter(granted).values_list("key", flat=True).distinct()))


def narrowed(*scopes: frozenset[str] | None) -> frozenset[str] | None:
    """What every one of `scopes` allows (None allows everything)."""
    result: frozenset[str] | None = None
    for scope in scopes:
        if scope is not None:
            result = scope if result is None else result & scope
    return result


def can_see_document(user: Any, doc: Document) -> bool:
    keys = visible_keys(user)
    return keys is None or doc.collection.key in keys


def visible_documents(user: Any, engine_ids: Iterable[str]) -> set[str]:
    """Which of these engine document ids ("doc-12") `user` may open; ids of documents since deleted count
    as visible (the viewer says they are gone, and nothing of them is left to leak)."""
    ids = set(engine_ids)
    keys = visible_keys(user)
    if keys is None:
        return ids
    pks = {int(m.group(1)): i for i in ids if (m := _CONSOLE_DOCUMENT.fullmatch(i))}
    hidden = Document.objects.filter(pk__in=pks).exclude(collection__key__in=keys).values_list("pk", flat=True)
    return ids - {pks[pk] for pk in hidden}
