"""A plain Django view through Django's own WSGI handler: the path Django users take.

Minimal settings, configured in code: DEBUG off, no middleware, no installed apps, no
database; one URL pattern.  The view returns the same small JSON dict as the other framework
scenarios.
"""

from typing import Any

import django
from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.urls import path

settings.configure(
    DEBUG=False,
    ALLOWED_HOSTS=["*"],
    SECRET_KEY="benchmark-only-not-secret",
    ROOT_URLCONF=__name__,
    MIDDLEWARE=[],
    INSTALLED_APPS=[],
    DATABASES={},
    USE_TZ=True,
    LOGGING_CONFIG=None,
)
django.setup()


def index(request: HttpRequest) -> JsonResponse:
    data: dict[str, Any] = {"message": "Hello, world!", "id": 42, "ok": True}
    return JsonResponse(data)


urlpatterns = [path("", index)]

from django.core.wsgi import get_wsgi_application  # noqa: E402 - after settings.configure

app = get_wsgi_application()
