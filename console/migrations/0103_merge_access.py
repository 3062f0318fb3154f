"""Joins the two leaves that branched from 0101_collections: a source's collection, and link codes kept as digests."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("console", "0102_console18_source_collection"),
        ("console", "0102_links18_link_code_digest"),
    ]
    operations: list[migrations.operations.base.Operation] = []
