"""Change requests, their approvals and shadow labels move from ``rollout`` to
``governance``. The tables stay as they are (``db_table`` keeps their names): this migration
only adds the models to governance's state (``rollout`` 0010 removes them from its own), and
moves their content types, so the permissions on them (same codenames) and any group, user
or object assignment of those permissions keep pointing at them."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

MOVED_MODELS = ("changerequest", "changeapproval", "shadowlabel")


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
    _move_content_types(apps, schema_editor, "rollout", "governance")


def backwards(apps, schema_editor):
    _move_content_types(apps, schema_editor, "governance", "rollout")


STATE = [
    migrations.CreateModel(
        name="ChangeRequest",
        fields=[
            (
                "id",
                models.BigAutoField(
                    auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                ),
            ),
            (
                "status",
                models.CharField(
                    choices=[
                        ("open", "Open"),
                        ("applied", "Applied"),
                        ("rejected", "Rejected"),
                        ("withdrawn", "Withdrawn"),
                    ],
                    default="open",
                    max_length=12,
                ),
            ),
            ("classification", models.CharField(max_length=12)),
            ("reason", models.CharField(max_length=300)),
            ("before", models.JSONField()),
            ("after", models.JSONField()),
            ("revision", models.PositiveIntegerField(default=1)),
            ("required_approvals", models.PositiveSmallIntegerField(default=1)),
            ("created_at", models.DateTimeField(auto_now_add=True)),
            ("updated_at", models.DateTimeField(auto_now=True)),
            ("closed_at", models.DateTimeField(blank=True, null=True)),
            ("close_comment", models.TextField(blank=True)),
            (
                "agent",
                models.ForeignKey(
                    on_delete=django.db.models.deletion.CASCADE,
                    related_name="change_requests",
                    to="rollout.agent",
                ),
            ),
            (
                "applied_version",
                models.ForeignKey(
                    blank=True,
                    null=True,
                    on_delete=django.db.models.deletion.PROTECT,
                    related_name="+",
                    to="rollout.policyversion",
                ),
            ),
            (
                "author",
                models.ForeignKey(
                    on_delete=django.db.models.deletion.PROTECT,
                    related_name="+",
                    to=settings.AUTH_USER_MODEL,
                ),
            ),
            (
                "base_version",
                models.ForeignKey(
                    blank=True,
                    null=True,
                    on_delete=django.db.models.deletion.PROTECT,
                    related_name="+",
                    to="rollout.policyversion",
                ),
            ),
            (
                "closed_by",
                models.ForeignKey(
                    blank=True,
                    null=True,
                    on_delete=django.db.models.deletion.PROTECT,
                    related_name="+",
                    to=settings.AUTH_USER_MODEL,
                ),
            ),
        ],
        options={
            "db_table": "rollout_changerequest",
            "ordering": ["-created_at", "-id"],
            "indexes": [models.Index(fields=["status", "agent"], name="change_request_status")],
        },
    ),
    migrations.CreateModel(
        name="ChangeApproval",
        fields=[
            (
                "id",
                models.BigAutoField(
                    auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                ),
            ),
            ("revision", models.PositiveIntegerField()),
            ("comment", models.TextField(blank=True)),
            ("voided", models.BooleanField(default=False)),
            ("created_at", models.DateTimeField(auto_now_add=True)),
            (
                "approver",
                models.ForeignKey(
                    on_delete=django.db.models.deletion.PROTECT,
                    related_name="+",
                    to=settings.AUTH_USER_MODEL,
                ),
            ),
            (
                "change_request",
                models.ForeignKey(
                    on_delete=django.db.models.deletion.CASCADE,
                    related_name="approvals",
                    to="governance.changerequest",
                ),
            ),
        ],
        options={
            "db_table": "rollout_changeapproval",
            "ordering": ["created_at", "id"],
            "constraints": [
                models.UniqueConstraint(
                    fields=("change_request", "approver", "revision"),
                    name="one_approval_per_approver_revision",
                )
            ],
        },
    ),
    migrations.CreateModel(
        name="ShadowLabel",
        fields=[
            (
                "id",
                models.BigAutoField(
                    auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                ),
            ),
            (
                "label",
                models.CharField(
                    choices=[
                        ("would_approve", "Would Approve"),
                        ("would_reject", "Would Reject"),
                    ],
                    max_length=20,
                ),
            ),
            ("created_at", models.DateTimeField(auto_now_add=True)),
            ("updated_at", models.DateTimeField(auto_now=True)),
            (
                "action",
                models.ForeignKey(
                    on_delete=django.db.models.deletion.CASCADE,
                    related_name="shadow_labels",
                    to="approvals.action",
                ),
            ),
            (
                "reviewer",
                models.ForeignKey(
                    on_delete=django.db.models.deletion.PROTECT,
                    related_name="+",
                    to=settings.AUTH_USER_MODEL,
                ),
            ),
        ],
        options={
            "db_table": "rollout_shadowlabel",
            "ordering": ["created_at", "id"],
            "constraints": [
                models.UniqueConstraint(
                    fields=("action", "reviewer"), name="one_label_per_reviewer"
                )
            ],
        },
    ),
]


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        # The tables were created there (0004_governance); they stay.
        ("rollout", "0009_move_credentials_to_accounts"),
        ("approvals", "0004_decision_channel"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("auth", "0012_alter_user_first_name_max_length"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=STATE, database_operations=[]),
        migrations.RunPython(forwards, backwards),
    ]
