from django.apps import AppConfig


class RolloutConfig(AppConfig):
    name = "rollout"
    verbose_name = "Rollout and governance"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_in

        from rollout.login_protection import start_idle_clock

        # Every way of logging in (the login pages, the test client) starts the idle clock.
        user_logged_in.connect(start_idle_clock, dispatch_uid="airlock-idle-clock")

        from rollout.access_hints import connect_signals

        connect_signals()

        from rollout import account_audit

        # Role and account changes are audited whichever path makes them.
        account_audit.connect_signals()

        from django.contrib.auth import get_user_model
        from django.db.models.signals import pre_save

        from config.identity import refuse_colliding_username

        # No two people share a username skeleton, whatever path saves the user.
        pre_save.connect(
            refuse_colliding_username,
            sender=get_user_model(),
            dispatch_uid="airlock-username-skeleton",
        )
