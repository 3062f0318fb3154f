# Answers in progress name their process and its last heartbeat, so an orphan can be finished (console/ops/orphans.py).

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('console', '0003_message_not_covered'),
    ]

    operations = [
        migrations.AddField(
            model_name='message',
            name='owner',
            field=models.CharField(blank=True, max_length=200),
        ),
        migrations.AddField(
            model_name='message',
            name='heartbeat_at',
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddIndex(
            model_name='message',
            index=models.Index(condition=models.Q(('error', 'in_progress')), fields=['heartbeat_at'], name='message_in_progress'),
        ),
    ]
