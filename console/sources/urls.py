"""Mounted by console.urls under /sources/, in the "sources" namespace."""

from __future__ import annotations

from django.urls import path

from console.sources import views

app_name = "sources"

urlpatterns = [
    path("<int:doc_id>/", views.document_view, name="document"),
    path("<int:doc_id>/original", views.original_view, name="original"),
]
