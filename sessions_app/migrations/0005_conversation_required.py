"""Conversations (schema, second half): every message now belongs to a conversation (0004 gave
one to every existing message); the per-seat sequence is gone, the pk keeps send order.

Reversible: on the way back the sequence column returns numbered 1..n per seat in pk order
(send order), so the old unique (session, sequence) constraint holds again."""

import django.db.models.deletion
from django.db import migrations, models


def renumber(apps, schema_editor):
    ChatMessage = apps.get_model("sessions_app", "ChatMessage")
    counters = {}
    for pk, seat in ChatMessage.objects.order_by("pk").values_list("pk", "seat_id"):
        counters[seat] = counters.get(seat, 0) + 1
        ChatMessage.objects.filter(pk=pk).update(sequence=counters[seat])


class Migration(migrations.Migration):
    dependencies = [("sessions_app", "0004_messages_into_conversations")]

    operations = [
        migrations.AlterField(
            model_name="chatmessage",
            name="conversation",
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="messages", to="sessions_app.conversation", verbose_name="conversation"),
        ),
        migrations.AlterField(
            model_name="chatmessage",
            name="sequence",
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.RunPython(migrations.RunPython.noop, renumber),
        migrations.RemoveField(model_name="chatmessage", name="sequence"),
    ]
