import uuid

from django.db import migrations, models


def create_installation(apps, schema_editor):
    from audit.installation import seal

    Installation = apps.get_model("audit", "Installation")
    alias = schema_editor.connection.alias
    if not Installation.objects.using(alias).filter(pk=1).exists():
        made = str(uuid.uuid4())
        Installation.objects.using(alias).create(pk=1, installation_id=made, seal=seal(made))


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0004_refusal_window"),
    ]

    operations = [
        migrations.CreateModel(
            name="Installation",
            fields=[
                (
                    "id",
                    models.PositiveSmallIntegerField(default=1, primary_key=True, serialize=False),
                ),
                ("installation_id", models.CharField(max_length=64, unique=True)),
                ("seal", models.CharField(blank=True, max_length=64)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
            ],
        ),
        migrations.RunPython(create_installation, migrations.RunPython.noop),
    ]
