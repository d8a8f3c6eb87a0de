"""Conversations (schema, second half): every message now belongs to a conversation (0004 gave
one to every existing message); the per-seat sequence is gone, the pk keeps send order."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("sessions_app", "0004_messages_into_conversations")]

    operations = [
        migrations.AlterField(
            model_name="chatmessage",
            name="conversation",
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="messages", to="sessions_app.conversation", verbose_name="conversation"),
        ),
        migrations.RemoveField(model_name="chatmessage", name="sequence"),
    ]
