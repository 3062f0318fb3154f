"""Joins the migrations that were written side by side (each depends on 0003), so there is one leaf."""

from __future__ import annotations

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("console", "0004_firsthour"),
        ("console", "0004_ingestjobs"),
        ("console", "0004_storage"),
        ("console", "0004_webedge"),
    ]
    operations: list[migrations.operations.base.Operation] = []
