"""Change requests, their approvals and shadow labels now belong to ``governance``
(``governance`` 0001 takes them into its state and moves their content types). Their tables
stay, so this only removes them from rollout's state."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("rollout", "0010_move_drill_to_incidents"),
        ("governance", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                # The approvals point at the requests: they go first.
                migrations.DeleteModel(name="ChangeApproval"),
                migrations.DeleteModel(name="ChangeRequest"),
                migrations.DeleteModel(name="ShadowLabel"),
            ],
            database_operations=[],
        ),
    ]
