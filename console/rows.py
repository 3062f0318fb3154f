"""Rows written and read as plain SQL, for the few statements on every question's path.

Django's query compiler costs 0.3-1 ms of CPU per statement, more than SQLite or PostgreSQL take to run it,
and a web question writes three (its conversation, its question and answer, the finished answer). These
helpers build the statement from the model's own fields, so values are converted exactly as the ORM
converts them (`pre_save` fills `auto_now_add`, `get_db_prep_save` adapts datetimes and JSON for the
database in use), and raise the same `django.db` errors. The model methods that use them stay the one way
to make each change.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.db import connections, models, router


def _column(field: object) -> str:
    assert isinstance(field, models.Field) and field.column, f"{field!r} has no column"
    return field.column


def sql_names(model: type[models.Model], *fields: str) -> tuple[str, ...]:
    """`model`'s table and these fields' columns, quoted: for the few reads on every question's path written as SQL."""
    names = [model._meta.db_table, *(_column(model._meta.get_field(name)) for name in fields)]
    connection = connections[router.db_for_read(model)]
    return tuple(connection.ops.quote_name(name) for name in names)


def insert(rows: Sequence[models.Model]) -> None:
    """INSERT new instances of one model (with a database-generated primary key) in one statement and set their
    primary keys, as `bulk_create` does."""
    model = type(rows[0])
    meta = model._meta
    fields = [f for f in meta.concrete_fields if not f.primary_key]
    connection = connections[router.db_for_write(model)]
    quote = connection.ops.quote_name
    values = [f.get_db_prep_save(f.pre_save(row, add=True), connection) for row in rows for f in fields]
    one = "(" + ", ".join(["%s"] * len(fields)) + ")"
    sql = (f"INSERT INTO {quote(meta.db_table)} ({', '.join(quote(_column(f)) for f in fields)}) "
           f"VALUES {', '.join([one] * len(rows))} RETURNING {quote(_column(meta.pk))}")
    with connection.cursor() as cursor:
        cursor.execute(sql, values)
        keys = [found[0] for found in cursor.fetchall()]
    for row, key in zip(rows, keys, strict=True):
        row.pk = key
        row._state.adding = False
        row._state.db = connection.alias


def update(row: models.Model, fields: Sequence[str]) -> None:
    """UPDATE these fields of a saved instance, as `save(update_fields=fields)` does."""
    meta = row._meta
    chosen = [field for name in fields if isinstance(field := meta.get_field(name), models.Field)]
    assert len(chosen) == len(fields), f"{fields} are not all fields of {meta.label}"
    connection = connections[router.db_for_write(type(row))]
    quote = connection.ops.quote_name
    values = [field.get_db_prep_save(field.pre_save(row, add=False), connection) for field in chosen]
    assignments = ", ".join(f"{quote(_column(f))} = %s" for f in chosen)
    pk = meta.pk
    assert pk is not None
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {quote(meta.db_table)} SET {assignments} WHERE {quote(_column(pk))} = %s",
                       [*values, pk.get_db_prep_value(row.pk, connection)])
