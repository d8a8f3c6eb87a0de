from django.apps import AppConfig


class SessionsAppConfig(AppConfig):
    name = "sessions_app"
    verbose_name = "Chat gate"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from sessions_app import admission, services

        # After Redis loses its data, scripts refuse until the recorded limits are back.
        admission.config_loader = services.limits_recorded
