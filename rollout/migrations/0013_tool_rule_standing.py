from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("rollout", "0012_tier_max_pending_seconds"),
    ]

    operations = [
        migrations.AddField(
            model_name="toolrule",
            name="standing",
            field=models.JSONField(blank=True, default=dict),
        ),
    ]
