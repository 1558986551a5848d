"""Personal tokens, recovery codes and login failures now belong to ``accounts``
(``accounts`` 0001 takes them into its state and moves their content types). Their tables
stay, so this only removes them from rollout's state."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("rollout", "0008_drill_probe_token"),
        ("accounts", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.DeleteModel(name="LoginFailure"),
                migrations.DeleteModel(name="PersonalToken"),
                migrations.DeleteModel(name="RecoveryCode"),
            ],
            database_operations=[],
        ),
    ]
