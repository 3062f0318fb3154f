from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from console.ingest import status
from console.pages import views

console_patterns = [
    path("", views.dashboard_view, name="dashboard"),
    path("documents/", views.documents_view, name="documents"),
    path("documents/<int:doc_id>/", views.document_view, name="document"),
    path("documents/<int:doc_id>/delete", views.document_delete_view, name="document-delete"),
    path("documents/<int:doc_id>/reingest", views.document_reingest_view, name="document-reingest"),
    path("jobs/", views.jobs_view, name="jobs"),
    path("jobs/<int:job_id>/", views.job_view, name="job"),
    path("jobs/<int:job_id>/retry", views.job_retry_view, name="job-retry"),
    path("jobs/<int:job_id>/cancel", views.job_cancel_view, name="job-cancel"),
    path("conversations/", views.conversations_view, name="conversations"),
    path("conversations/<int:conversation_id>/", views.conversation_view, name="conversation"),
]

urlpatterns = [
    path("", views.home, name="home"),
    path("health", views.health, name="health"),
    path("health/ready", views.health_ready, name="health-ready"),
    path("metrics", views.metrics, name="metrics"),
    path("status/<int:job_id>", status.job_status_view, name="job-status"),
    path("console/", include((console_patterns, "console"))),
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
