from django.apps import AppConfig
from django.db.models.signals import post_migrate


class AuditConfig(AppConfig):
    name = "audit"
    verbose_name = "Audit log"

    def ready(self) -> None:
        from audit.installation import after_migrate

        # migrate (and the flush between transactional tests) may make or remove the row.
        post_migrate.connect(after_migrate, sender=self, dispatch_uid="audit-installation")
