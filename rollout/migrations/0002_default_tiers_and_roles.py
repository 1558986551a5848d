"""The default tier ladder and the four roles with their (all-agents) permissions."""

from django.db import migrations


def forwards(apps, schema_editor):
    from rollout.reference import ensure_reference_data

    ensure_reference_data(apps)


class Migration(migrations.Migration):
    dependencies = [
        ("rollout", "0001_initial"),
        ("approvals", "0001_initial"),
        ("audit", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]
    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
