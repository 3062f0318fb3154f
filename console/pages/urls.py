"""Mounted by console.urls under /console/, in the "console" namespace."""

from __future__ import annotations

from django.urls import path

from console.pages import guide, members, views

app_name = "console"

urlpatterns = [
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
    path("members/", members.members_view, name="members"),
    path("documents/guide/remove", guide.guide_remove_view, name="guide-remove"),
]
