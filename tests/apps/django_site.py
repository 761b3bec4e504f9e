"""One Django configuration shared by the Django and Channels test apps (settings are global)."""

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="dualcorn-tests-only",
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF=__name__,
        MIDDLEWARE=[],
        INSTALLED_APPS=[],
    )


def hello(request: HttpRequest) -> HttpResponse:
    return HttpResponse(b"hello from django", content_type="text/plain")


@csrf_exempt
def echo(request: HttpRequest) -> HttpResponse:
    return HttpResponse(request.body, content_type="application/octet-stream")


urlpatterns = [path("", hello), path("echo", echo)]
