from django.apps import AppConfig
from django.db.models.signals import post_migrate


class AuditConfig(AppConfig):
    name = "audit"
    verbose_name = "Audit log"

    def ready(self) -> None:
        from audit.actor_context import install_celery_hook, install_command_hook
        from audit.installation import after_migrate

        # Who acts when no caller names an actor: each management command and Celery task.
        install_command_hook()
        install_celery_hook()

        # migrate (and the flush between transactional tests) may make or remove the row.
        post_migrate.connect(after_migrate, sender=self, dispatch_uid="audit-installation")
