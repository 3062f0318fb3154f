"""Mounted by console.urls under /console/sources/, in the "syncing" namespace."""

from __future__ import annotations

from django.urls import path

from console.syncing import views

app_name = "syncing"

urlpatterns = [
    path("", views.sources_view, name="sources"),
    path("add", views.source_add_view, name="add"),
    path("<int:source_id>/", views.source_view, name="source"),
    path("<int:source_id>/edit", views.source_edit_view, name="edit"),
    path("<int:source_id>/sync", views.source_sync_view, name="sync"),
    path("<int:source_id>/pause", views.source_pause_view, name="pause"),
    path("<int:source_id>/resume", views.source_resume_view, name="resume"),
    path("<int:source_id>/delete", views.source_delete_view, name="delete"),
]
