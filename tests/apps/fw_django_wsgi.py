from django.core.wsgi import get_wsgi_application

from tests.apps import django_site  # noqa: F401  # configures settings first

app = get_wsgi_application()
