"""Drills move from ``rollout`` to ``incidents``. The table stays as it is (``db_table`` keeps
its name): this migration only adds the model to incidents' state (``rollout`` 0010 removes
it from its own), and moves its content type, so the permissions on it (same codenames) and
any group, user or object assignment of those permissions keep pointing at it."""

import django.db.models.deletion
from django.db import migrations, models

MOVED_MODELS = ("drill",)


def _move_content_types(apps, schema_editor, source, target):
    """Relabel the moved models' content types from ``source`` to ``target``. Where the
    target's already exists (a ``migrate`` that created it before this ran), its permissions
    and object permissions are joined to the relabelled ones and it is dropped."""
    content_type_model = apps.get_model("contenttypes", "ContentType")
    permission_model = apps.get_model("auth", "Permission")
    db = schema_editor.connection.alias
    types = content_type_model.objects.using(db)
    for model in MOVED_MODELS:
        old = types.filter(app_label=source, model=model).first()
        if old is None:
            continue  # a fresh database: content types are created after migrate
        duplicate = types.filter(app_label=target, model=model).first()
        if duplicate is not None:
            for permission in permission_model.objects.using(db).filter(content_type=duplicate):
                if (
                    permission_model.objects.using(db)
                    .filter(content_type=old, codename=permission.codename)
                    .exists()
                ):
                    permission.delete()
                else:
                    permission.content_type = old
                    permission.save(update_fields=["content_type"])
            duplicate.delete()
        old.app_label = target
        old.save(update_fields=["app_label"])
    content_type_model.objects.clear_cache()


def forwards(apps, schema_editor):
    _move_content_types(apps, schema_editor, "rollout", "incidents")


def backwards(apps, schema_editor):
    _move_content_types(apps, schema_editor, "incidents", "rollout")


STATE = [
    migrations.CreateModel(
        name="Drill",
        fields=[
            (
                "id",
                models.BigAutoField(
                    auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                ),
            ),
            ("started_by", models.CharField(max_length=150)),
            ("started_at", models.DateTimeField(auto_now_add=True)),
            ("finished_at", models.DateTimeField(blank=True, null=True)),
            ("succeeded", models.BooleanField(default=False)),
            ("stop_ms", models.FloatField(blank=True, null=True)),
            ("notify_ms", models.FloatField(blank=True, null=True)),
            ("probes", models.PositiveIntegerField(default=0)),
            ("detail", models.TextField(blank=True)),
            (
                "agent",
                models.ForeignKey(
                    on_delete=django.db.models.deletion.CASCADE,
                    related_name="drills",
                    to="rollout.agent",
                ),
            ),
            (
                "switch",
                models.ForeignKey(
                    null=True,
                    on_delete=django.db.models.deletion.SET_NULL,
                    related_name="+",
                    to="rollout.killswitch",
                ),
            ),
            (
                "probe_token",
                models.OneToOneField(
                    blank=True,
                    null=True,
                    on_delete=django.db.models.deletion.SET_NULL,
                    related_name="drill",
                    to="rollout.agenttoken",
                ),
            ),
        ],
        options={
            "db_table": "rollout_drill",
            "ordering": ["-started_at"],
        },
    ),
]


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        # The table was created there (0003_drill, 0008_drill_probe_token); it stays.
        ("rollout", "0009_move_credentials_to_accounts"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=STATE, database_operations=[]),
        migrations.RunPython(forwards, backwards),
    ]
