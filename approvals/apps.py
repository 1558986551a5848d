from django.apps import AppConfig


class ApprovalsConfig(AppConfig):
    name = "approvals"
    verbose_name = "Actions and approvals"

    def ready(self) -> None:
        from approvals import checks  # noqa: F401 (registers the deploy checks)
        from approvals.notifications import owe_installation_notice
        from core.notices import owe_notice

        # Accounts' credential notices and the audit chain's alert go through the outbox.
        owe_notice.connect(owe_installation_notice)
