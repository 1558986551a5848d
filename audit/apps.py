from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "audit"
    verbose_name = "Audit log"

    def ready(self) -> None:
        from audit.actor_context import install_celery_hook, install_command_hook

        # Who acts when no caller names an actor: each management command and Celery task.
        install_command_hook()
        install_celery_hook()
