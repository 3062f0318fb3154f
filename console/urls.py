"""The site's URLs: each room mounts its own (ops at the root, the console, the chat, Slack)."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView

from console.accounts.views import LoginView
from console.ingest import status
from console.ops.login_throttle import AdminLoginForm
from console.pages import views as pages

admin.site.login_form = AdminLoginForm  # throttled like the console's login, and says so

urlpatterns = [
    path("", pages.home, name="home"),
    # Browsers ask every site for /favicon.ico (the admin's pages too): one icon instead of a 404 each time.
    path("favicon.ico", RedirectView.as_view(url=static("console/favicon.svg"), permanent=True)),
    path("", include("console.ops.urls")),  # /health, /health/ready, /metrics
    path("status/<int:job_id>", status.job_status_view, name="job-status"),
    path("console/sources/", include("console.syncing.urls")),  # sources kept in sync (folders, Git, web sites)
    path("console/", include("console.pages.urls")),
    path("chat/", include("console.chat.urls")),
    path("sources/", include("console.sources.urls")),  # the source viewer every citation links to
    path("slack/", include("bots.slack.urls")),  # /slack/events: Slack's Events API, commands, buttons
    path("accounts/login/", LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
]
