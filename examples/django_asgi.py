"""A single-file Django project served over ASGI.

dualcorn examples.django_asgi:app
"""

from __future__ import annotations

from django.conf import settings
from django.core.asgi import get_asgi_application
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


async def hello(request: HttpRequest) -> HttpResponse:
    return HttpResponse(b"hello from django asgi", content_type="text/plain")


@csrf_exempt
async def echo(request: HttpRequest) -> HttpResponse:
    return HttpResponse(request.body, content_type="application/octet-stream")


urlpatterns = [path("", hello), path("echo", echo)]

app = get_asgi_application()
