# Written by hand: link codes are kept as a keyed hash (LinkCode.digest), never as the code itself.

from django.db import migrations, models


def forget_codes(apps, schema_editor):
    # Codes live minutes and none was ever issued before this change; the rest could not be hashed anyway.
    apps.get_model("console", "LinkCode").objects.all().delete()


class Migration(migrations.Migration):

    dependencies = [
        ('console', '0101_collections'),
    ]

    operations = [
        migrations.RunPython(forget_codes, migrations.RunPython.noop),
        migrations.RemoveField(
            model_name='linkcode',
            name='code',
        ),
        migrations.AddField(
            model_name='linkcode',
            name='digest',
            field=models.CharField(default='', max_length=64, unique=True),
            preserve_default=False,
        ),
    ]
