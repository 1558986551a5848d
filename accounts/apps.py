from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "People and credentials"

    def ready(self) -> None:
        from django.contrib.auth import get_user_model
        from django.contrib.auth.signals import user_logged_in
        from django.db.models.signals import pre_save

        from accounts import access_hints, audit_receivers
        from accounts.login_protection import start_idle_clock
        from core.identity import refuse_colliding_username

        # Every way of logging in (the login pages, the test client) starts the idle clock.
        user_logged_in.connect(start_idle_clock, dispatch_uid="airlock-idle-clock")
        # Live sockets hear at once of any change of rights, account or session.
        access_hints.connect_signals()
        # Role and account changes are audited whichever path makes them.
        audit_receivers.connect_signals()
        # No two people share a username skeleton, whatever path saves the user.
        pre_save.connect(
            refuse_colliding_username,
            sender=get_user_model(),
            dispatch_uid="airlock-username-skeleton",
        )
