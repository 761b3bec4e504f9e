"""A single-file Django project served over WSGI.

dualcorn examples.django_wsgi:app
"""

from __future__ import annotations

from django.conf import settings
from django.core.wsgi import get_wsgi_application
from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

# Settings are process-global: configure them once, before get_*_application() runs setup.
if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="example-only-not-secret",
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF=__name__,
        MIDDLEWARE=[],
        INSTALLED_APPS=[],
    )


def hello(request: HttpRequest) -> HttpResponse:
    return HttpResponse(b"hello from django wsgi", content_type="text/plain")


@csrf_exempt
def echo(request: HttpRequest) -> HttpResponse:
    return HttpResponse(request.body, content_type="application/octet-stream")


urlpatterns = [path("", hello), path("echo", echo)]

app = get_wsgi_application()
