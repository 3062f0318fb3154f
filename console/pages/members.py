"""The console's Members page: every account, and a form that creates one (a member, or staff)."""

from __future__ import annotations

import structlog
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import UserCreationForm
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from console.pages.views import _paginate, staff_required

log = structlog.get_logger(__name__, component="accounts")


class MemberCreationForm(UserCreationForm):
    """Django's own user creation (password validators included), plus the staff switch."""

    class Meta(UserCreationForm.Meta):
        model = get_user_model()
        fields = ("username", "email", "is_staff")
        labels = {"is_staff": "Staff (console and admin)"}


@require_http_methods(["GET", "POST"])
@staff_required
def members_view(request: HttpRequest) -> HttpResponse:
    form = MemberCreationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        kind = "staff member" if user.is_staff else "member"
        log.info("account.created", user_id=user.pk, staff=user.is_staff, by=request.user.pk)
        messages.success(request, f"{user.get_username()} can now log in as a {kind}.")
        return redirect("console:members")
    accounts = get_user_model().objects.prefetch_related("groups").order_by("-is_staff", "username")
    return render(request, "console/members.html", {"form": form, "page": _paginate(request, accounts), "nav": "members"})
