"""Conversations (schema, first half): the new table and the message columns, still nullable so
that 0004 can move every existing seat's messages into a conversation before 0005 requires one."""

import uuid

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models

import sessions_app.models.conversations


class Migration(migrations.Migration):
    dependencies = [
        ("sessions_app", "0002_grace_lower_bound"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="Conversation",
            fields=[
                ("id", models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                ("title", models.CharField(blank=True, max_length=200, verbose_name="title")),
                ("status", models.CharField(choices=[("active", "Active"), ("archived", "Archived"), ("deleted", "Deleted")], default="active", max_length=10, verbose_name="status")),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now, verbose_name="created")),
                ("updated_at", models.DateTimeField(default=django.utils.timezone.now, verbose_name="updated")),
                ("last_message_at", models.DateTimeField(blank=True, null=True, verbose_name="last message")),
                ("metadata", models.JSONField(blank=True, default=dict, verbose_name="metadata")),
                ("trace_id", models.CharField(default=sessions_app.models.conversations._trace_id, editable=False, max_length=32, verbose_name="trace id")),
                ("owner", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="conversations", to=settings.AUTH_USER_MODEL, verbose_name="owner")),
            ],
            options={
                "verbose_name": "conversation",
                "verbose_name_plural": "conversations",
                "ordering": ["-updated_at"],
                "indexes": [models.Index(fields=["owner", "status", "updated_at"], name="sessions_ap_owner_i_cf8c67_idx")],
            },
        ),
        migrations.RemoveConstraint(model_name="chatmessage", name="unique_message_seq"),
        migrations.RenameField(model_name="chatmessage", old_name="session", new_name="seat"),
        migrations.RenameField(model_name="chatmessage", old_name="role", new_name="sender_type"),
        migrations.RenameField(model_name="chatmessage", old_name="tokens", new_name="tokens_used"),
        migrations.AlterField(
            model_name="chatmessage",
            name="seat",
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name="messages", to="sessions_app.chatsession", verbose_name="seat"),
        ),
        migrations.AddField(
            model_name="chatmessage",
            name="conversation",
            field=models.ForeignKey(null=True, on_delete=django.db.models.deletion.CASCADE, related_name="messages", to="sessions_app.conversation", verbose_name="conversation"),
        ),
        migrations.AddField(
            model_name="chatmessage",
            name="parent",
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE, related_name="children", to="sessions_app.chatmessage", verbose_name="follows"),
        ),
        migrations.AddField(
            model_name="chatmessage",
            name="message_type",
            field=models.CharField(choices=[("text", "Text"), ("file", "File"), ("system", "System")], default="text", max_length=10, verbose_name="kind"),
        ),
        migrations.AddField(
            model_name="chatmessage",
            name="edited",
            field=models.BooleanField(default=False, verbose_name="edited"),
        ),
        migrations.AddField(
            model_name="chatmessage",
            name="edited_at",
            field=models.DateTimeField(blank=True, null=True, verbose_name="edited at"),
        ),
    ]
