"""Mounted by console.urls under /console/, in the "console" namespace."""

from __future__ import annotations

from django.urls import path

from console.pages import access, collection_views, guide, members, views

app_name = "console"

urlpatterns = [
    path("", views.dashboard_view, name="dashboard"),
    path("documents/", views.documents_view, name="documents"),
    path("documents/<int:doc_id>/", views.document_view, name="document"),
    path("documents/<int:doc_id>/delete", views.document_delete_view, name="document-delete"),
    path("documents/<int:doc_id>/reingest", views.document_reingest_view, name="document-reingest"),
    path("documents/<int:doc_id>/move", collection_views.document_move_view, name="document-move"),
    path("documents/move", collection_views.documents_move_view, name="documents-move"),
    path("jobs/", views.jobs_view, name="jobs"),
    path("jobs/<int:job_id>/", views.job_view, name="job"),
    path("jobs/<int:job_id>/retry", views.job_retry_view, name="job-retry"),
    path("jobs/<int:job_id>/cancel", views.job_cancel_view, name="job-cancel"),
    path("conversations/", views.conversations_view, name="conversations"),
    path("conversations/<int:conversation_id>/", views.conversation_view, name="conversation"),
    path("members/", members.members_view, name="members"),
    path("documents/guide/remove", guide.guide_remove_view, name="guide-remove"),
    # Access: collections, groups, channel scopes, account links (console.pages.collection_views, .access)
    path("collections/", collection_views.collections_view, name="collections"),
    path("collections/<int:collection_id>/", collection_views.collection_view, name="collection"),
    path("collections/<int:collection_id>/delete", collection_views.collection_delete_view, name="collection-delete"),
    path("collections/<int:collection_id>/move", collection_views.collection_move_all_view, name="collection-move-all"),
    path("groups/", access.groups_view, name="groups"),
    path("groups/<int:group_id>/", access.group_view, name="group"),
    path("groups/<int:group_id>/members/<int:user_id>/remove", access.group_member_remove_view,
         name="group-member-remove"),
    path("groups/<int:group_id>/delete", access.group_delete_view, name="group-delete"),
    path("channels/", access.channels_view, name="channels"),
    path("channels/<int:scope_id>/", access.channel_view, name="channel"),
    path("channels/<int:scope_id>/delete", access.channel_delete_view, name="channel-delete"),
    path("links/", access.links_view, name="links"),
    path("links/<int:link_id>/delete", access.link_delete_view, name="link-delete"),
]
