from django.apps import AppConfig


class SlackApprovalsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "slack_approvals"
    verbose_name = "Slack approvals"

    def ready(self) -> None:
        # approvals sits below: it owes Slack messages and their updates only through hooks.
        from approvals import hooks
        from slack_approvals.actions import owe_message_updates, owe_messages_for_pending

        hooks.action_pending.connect(owe_messages_for_pending)
        hooks.action_left_pending.connect(owe_message_updates)
