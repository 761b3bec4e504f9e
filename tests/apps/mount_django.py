"""A Django WSGI site mounted at /admin-old in the mount tests: links from reverse().

It configures Django's (process-wide) settings itself, so it runs in its own process, the way
the mount tests start it (the in-process tests use tests.apps.django_site instead).
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.urls import path, reverse

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="dualcorn-tests-only",
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF=__name__,
        MIDDLEWARE=[],
        INSTALLED_APPS=[],
    )


def index(request: HttpRequest) -> JsonResponse:
    return JsonResponse(
        {
            "self": request.build_absolute_uri(reverse("index")),
            "page": reverse("page", args=["x"]),
            "script_name": request.META["SCRIPT_NAME"],
            "path_info": request.path_info,
        }
    )


def page(request: HttpRequest, name: str) -> JsonResponse:
    return JsonResponse({"page": name, "path": request.path})


urlpatterns = [path("", index, name="index"), path("page/<str:name>", page, name="page")]

from django.core.wsgi import get_wsgi_application  # noqa: E402  (after settings)

app = get_wsgi_application()
