"""People's credentials move from ``rollout`` to ``accounts``: personal tokens, recovery
codes and login failures. The tables stay as they are (``db_table`` keeps their names):
this migration only adds the models to accounts' state (``rollout`` 0009 removes them from
its own), and moves their content types, so the permissions on them (same codenames) and
any group, user or object assignment of those permissions keep pointing at them."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

MOVED_MODELS = ("personaltoken", "recoverycode", "loginfailure")


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
    _move_content_types(apps, schema_editor, "rollout", "accounts")


def backwards(apps, schema_editor):
    _move_content_types(apps, schema_editor, "accounts", "rollout")


STATE = [
    migrations.CreateModel(
        name="LoginFailure",
        fields=[
            (
                "id",
                models.BigAutoField(
                    auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                ),
            ),
            ("username", models.CharField(max_length=150)),
            ("ip", models.CharField(max_length=45)),
            ("at", models.DateTimeField()),
        ],
        options={
            "db_table": "rollout_loginfailure",
            "indexes": [
                models.Index(fields=["username", "at"], name="login_failure_user"),
                models.Index(fields=["ip", "at"], name="login_failure_ip"),
            ],
        },
    ),
    migrations.CreateModel(
        name="PersonalToken",
        fields=[
            (
                "id",
                models.BigAutoField(
                    auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                ),
            ),
            ("name", models.CharField(max_length=80)),
            ("prefix", models.CharField(max_length=12)),
            ("token_hash", models.CharField(max_length=64, unique=True)),
            ("scopes", models.JSONField(default=list)),
            ("created_at", models.DateTimeField(auto_now_add=True)),
            ("expires_at", models.DateTimeField()),
            ("revoked_at", models.DateTimeField(blank=True, null=True)),
            ("revoked_by", models.CharField(blank=True, max_length=150)),
            ("last_used_at", models.DateTimeField(blank=True, null=True)),
            ("stepped_up_at", models.DateTimeField(blank=True, null=True)),
            (
                "user",
                models.ForeignKey(
                    on_delete=django.db.models.deletion.CASCADE,
                    related_name="personal_tokens",
                    to=settings.AUTH_USER_MODEL,
                ),
            ),
        ],
        options={
            "db_table": "rollout_personaltoken",
            "ordering": ["-created_at", "-id"],
            "indexes": [models.Index(fields=["user", "revoked_at"], name="personal_token_owner")],
        },
    ),
    migrations.CreateModel(
        name="RecoveryCode",
        fields=[
            (
                "id",
                models.BigAutoField(
                    auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                ),
            ),
            ("code_hash", models.CharField(max_length=64)),
            ("created_at", models.DateTimeField(auto_now_add=True)),
            ("used_at", models.DateTimeField(blank=True, null=True)),
            (
                "user",
                models.ForeignKey(
                    on_delete=django.db.models.deletion.CASCADE,
                    related_name="recovery_codes",
                    to=settings.AUTH_USER_MODEL,
                ),
            ),
        ],
        options={
            "db_table": "rollout_recoverycode",
            "ordering": ["id"],
            "constraints": [
                models.UniqueConstraint(fields=("user", "code_hash"), name="recovery_code_unique")
            ],
        },
    ),
]


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        # The tables were created there (0005_access); they stay.
        ("rollout", "0008_drill_probe_token"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("auth", "0012_alter_user_first_name_max_length"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=STATE, database_operations=[]),
        migrations.RunPython(forwards, backwards),
    ]
