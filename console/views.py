"""The web pages and plain endpoints."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    return render(request, "console/home.html")


@require_GET
def health(request: HttpRequest) -> JsonResponse:
    """Liveness: answers at once and touches no dependency."""
    return JsonResponse({"status": "ok"})
