from django.apps import AppConfig
from django.db.models.signals import post_migrate


class AuditConfig(AppConfig):
    name = "audit"
    verbose_name = "Audit log"

    def ready(self) -> None:
        from audit.installation import forget_installation_id

        # migrate (and the flush between transactional tests) may make or remove the row.
        post_migrate.connect(forget_installation_id, dispatch_uid="audit-forget-installation")
