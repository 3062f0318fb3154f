"""Which collections each answer on a console page searched, by name (Message.collections keeps their keys)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from console.models import Collection


def name_searched_collections(messages: Iterable[Any]) -> None:
    """Sets `searched` on each message: the names of the collections it searched (a key whose collection
    was deleted since shows as the key), in name order; empty for questions and answers from before collections."""
    messages = list(messages)
    keys = {key for m in messages for key in (m.collections or [])}
    names = dict(Collection.objects.filter(key__in=keys).values_list("key", "name")) if keys else {}
    for message in messages:
        message.searched = sorted((names.get(key, key) for key in message.collections or []), key=str.casefold)
