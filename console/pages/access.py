"""The console's access pages: groups and their members, channel scopes, and account links.

Groups are Django's own (`auth.Group`): a collection open to "chosen groups" is searched by their
members. Every change here is recorded as a LogEntry, like the admin's (console.access.audit).
"""

from __future__ import annotations

import structlog
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from console.access import audit
from console.models import AccountLink, ChannelScope
from console.pages.access_forms import AccountLinkForm, ChannelScopeForm, GroupForm, MemberAddForm
from console.pages.views import _paginate, staff_required

log = structlog.get_logger(__name__, component="access")


def _usernames() -> list[str]:
    """For the username fields' suggestions (a <datalist>)."""
    return list(get_user_model().objects.filter(is_active=True).order_by("username").values_list("username", flat=True)[:500])


# -- groups -------------------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
@staff_required
def groups_view(request: HttpRequest) -> HttpResponse:
    form = GroupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        group = Group.objects.create(name=form.cleaned_data["name"])
        audit.record(request.user, group, audit.ADDED, "Added from the console.")
        log.info("group.created", group_id=group.pk, by=request.user.pk)
        messages.success(request, f"Group {group.name} added: add its members, then grant it collections.")
        return redirect("console:group", group.pk)
    groups = Group.objects.annotate(member_count=Count("user", distinct=True)).prefetch_related("collections").order_by("name")
    return render(request, "console/groups.html", {"groups": groups, "form": form, "nav": "access", "tab": "groups"})


@require_http_methods(["GET", "POST"])
@staff_required
def group_view(request: HttpRequest, group_id: int) -> HttpResponse:
    group = get_object_or_404(Group, pk=group_id)
    form = MemberAddForm(request.POST or None, group=group)
    if request.method == "POST" and form.is_valid():
        user = form.cleaned_data["username"]
        user.groups.add(group)
        audit.record(request.user, user, audit.CHANGED, f"Added to the group {group.name} from the console.")
        log.info("group.member_added", group_id=group.pk, user_id=user.pk, by=request.user.pk)
        messages.success(request, f"{user.get_username()} is now in {group.name}.")
        return redirect("console:group", group.pk)
    return render(request, "console/group.html", {
        "group": group, "form": form, "members": group.user_set.order_by("username"),
        "collections": group.collections.order_by("name"), "usernames": _usernames(), "nav": "access", "tab": "groups",
    })


@require_POST
@staff_required
def group_member_remove_view(request: HttpRequest, group_id: int, user_id: int) -> HttpResponse:
    group = get_object_or_404(Group, pk=group_id)
    user = get_object_or_404(group.user_set, pk=user_id)
    user.groups.remove(group)
    audit.record(request.user, user, audit.CHANGED, f"Removed from the group {group.name} from the console.")
    log.info("group.member_removed", group_id=group.pk, user_id=user.pk, by=request.user.pk)
    messages.success(request, f"{user.get_username()} is no longer in {group.name}.")
    return redirect("console:group", group.pk)


@require_POST
@staff_required
def group_delete_view(request: HttpRequest, group_id: int) -> HttpResponse:
    group = get_object_or_404(Group, pk=group_id)
    name, granted = group.name, [c.name for c in group.collections.all()]
    audit.record(request.user, group, audit.DELETED, "Deleted from the console" +
                 (f"; its members no longer see {', '.join(granted)}." if granted else "."))
    group.delete()
    log.info("group.deleted", group_id=group_id, by=request.user.pk)
    messages.success(request, f"Group {name} deleted" +
                     (f": its members no longer see {', '.join(granted)} through it." if granted else "."))
    return redirect("console:groups")


# -- channel scopes -----------------------------------------------------------------------------


def _save_scope(scope: ChannelScope, form: ChannelScopeForm) -> ChannelScope:
    data = form.cleaned_data
    scope.platform, scope.workspace, scope.channel, scope.label = (data["platform"], data["workspace"],
                                                                    data["channel"], data["label"])
    scope.save()
    scope.collections.set(data["collections"])
    return scope


def _scope_text(scope: ChannelScope) -> str:
    names = [c.name for c in scope.collections.order_by("name")]
    return ", ".join(names) if names else "nothing"


@require_http_methods(["GET", "POST"])
@staff_required
def channels_view(request: HttpRequest) -> HttpResponse:
    form = ChannelScopeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        scope = _save_scope(ChannelScope(), form)
        audit.record(request.user, scope, audit.ADDED, f"Added from the console; answers from {_scope_text(scope)}.")
        log.info("channel_scope.created", scope_id=scope.pk, by=request.user.pk)
        messages.success(request, f"{scope} answers from {_scope_text(scope)}.")
        return redirect("console:channels")
    scopes = ChannelScope.objects.prefetch_related("collections")
    return render(request, "console/channels.html", {"scopes": scopes, "form": form, "nav": "access", "tab": "channels"})


@require_http_methods(["GET", "POST"])
@staff_required
def channel_view(request: HttpRequest, scope_id: int) -> HttpResponse:
    scope = get_object_or_404(ChannelScope, pk=scope_id)
    form = ChannelScopeForm(request.POST or None, instance=scope)
    if request.method == "POST" and form.is_valid():
        before = _scope_text(scope)
        _save_scope(scope, form)
        audit.record(request.user, scope, audit.CHANGED,
                     f"Changed from the console; answers from {_scope_text(scope)} (was {before}).")
        log.info("channel_scope.changed", scope_id=scope.pk, by=request.user.pk)
        messages.success(request, f"{scope} answers from {_scope_text(scope)}.")
        return redirect("console:channels")
    return render(request, "console/channel.html", {"scope": scope, "form": form, "nav": "access", "tab": "channels"})


@require_POST
@staff_required
def channel_delete_view(request: HttpRequest, scope_id: int) -> HttpResponse:
    scope = get_object_or_404(ChannelScope, pk=scope_id)
    text = str(scope)
    audit.record(request.user, scope, audit.DELETED, "Deleted from the console; it answers from everyone's collections.")
    scope.delete()
    log.info("channel_scope.deleted", scope_id=scope_id, by=request.user.pk)
    messages.success(request, f"{text} now answers from the collections open to everyone.")
    return redirect("console:channels")


# -- account links ------------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
@staff_required
def links_view(request: HttpRequest) -> HttpResponse:
    form = AccountLinkForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        link = AccountLink.link(platform=data["platform"], external_user=data["external_user"], user=data["user"],
                                by=request.user)
        audit.record(request.user, link, audit.ADDED, "Linked from the console.")
        log.info("account_link.created", link_id=link.pk, user_id=link.user_id, by=request.user.pk)
        messages.success(request, f"{link}: their direct messages search what {link.user} may see.")
        return redirect("console:links")
    links = AccountLink.objects.select_related("user", "created_by")
    return render(request, "console/links.html", {"page": _paginate(request, links), "form": form,
                                                  "usernames": _usernames(), "nav": "access", "tab": "links"})


@require_POST
@staff_required
def link_delete_view(request: HttpRequest, link_id: int) -> HttpResponse:
    link = get_object_or_404(AccountLink.objects.select_related("user"), pk=link_id)
    text = str(link)
    audit.record(request.user, link, audit.DELETED, "Unlinked from the console.")
    link.delete()
    log.info("account_link.deleted", link_id=link_id, by=request.user.pk)
    messages.success(request, f"Unlinked {text}: their direct messages search only what everyone may see.")
    return redirect("console:links")
