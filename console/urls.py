"""The site's URLs: each room mounts its own (ops at the root, the console, the chat, Slack)."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from console.ingest import status
from console.pages import views as pages

urlpatterns = [
    path("", pages.home, name="home"),
    path("", include("console.ops.urls")),  # /health, /health/ready, /metrics
    path("status/<int:job_id>", status.job_status_view, name="job-status"),
    path("console/", include("console.pages.urls")),
    path("chat/", include("console.chat.urls")),
    path("slack/", include("bots.slack.urls")),  # /slack/events: Slack's Events API, commands, buttons
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(template_name="console/login.html", redirect_authenticated_user=True),
        name="login",
    ),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
]
