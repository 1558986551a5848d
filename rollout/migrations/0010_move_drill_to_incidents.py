"""Drills now belong to ``incidents`` (``incidents`` 0001 takes the model into its state and
moves its content type). The table stays, so this only removes it from rollout's state."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("rollout", "0009_move_credentials_to_accounts"),
        ("incidents", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="Drill")],
            database_operations=[],
        ),
    ]
