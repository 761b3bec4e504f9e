from django.core.asgi import get_asgi_application

from tests.apps import django_site  # noqa: F401  # configures settings first

app = get_asgi_application()
