"""The forms of the console's access pages: collections, moves, groups, channel scopes and account links.

Each validates what the models cannot say in a field error of their own: a name taken (in any case),
a Slack channel without its channel id, an id that is not one of that platform's ids.
"""

from __future__ import annotations

import re
from typing import Any

from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from console.models import AccountLink, ChannelScope, Collection, Document

_SLACK_ID = re.compile(r"[A-Z0-9]{2,20}")  # team T…, channel C…/G…, user U…/W… (https://api.slack.com/changelog/2016-08-11-user-id-format-changes)
_DISCORD_ID = re.compile(r"\d{1,20}")  # a snowflake: a 64-bit integer in decimal (17-20 digits today)


def _collections() -> forms.ModelMultipleChoiceField:
    return forms.ModelMultipleChoiceField(queryset=Collection.objects.order_by("name"), required=False,
                                          widget=forms.CheckboxSelectMultiple)


class CollectionForm(forms.Form):
    name = forms.CharField(max_length=100)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    visibility = forms.ChoiceField(choices=Collection.Visibility.choices, widget=forms.RadioSelect,
                                   initial=Collection.Visibility.EVERYONE, label="Who may see it")
    groups = forms.ModelMultipleChoiceField(queryset=Group.objects.order_by("name"), required=False,
                                            widget=forms.CheckboxSelectMultiple,
                                            help_text="With “chosen groups”: their members (and staff). None: staff only.")

    def __init__(self, *args: Any, instance: Collection | None = None, **kwargs: Any) -> None:
        self.instance = instance
        if instance is not None and "initial" not in kwargs:
            kwargs["initial"] = {"name": instance.name, "description": instance.description,
                                 "visibility": instance.visibility, "groups": list(instance.groups.all())}
        super().__init__(*args, **kwargs)

    def clean_name(self) -> str:
        name = str(self.cleaned_data["name"]).strip()
        taken = Collection.objects.filter(name__iexact=name)
        if self.instance is not None:
            taken = taken.exclude(pk=self.instance.pk)
        if taken.exists():
            raise forms.ValidationError("Another collection already has this name.")
        return name


class MoveForm(forms.Form):
    """Where one document goes."""

    collection = forms.ModelChoiceField(queryset=Collection.objects.order_by("name"), empty_label=None,
                                        label="Move to")


class BulkMoveForm(MoveForm):
    """Where the documents ticked on the list go."""

    documents = forms.ModelMultipleChoiceField(queryset=Document.objects.all(),
                                               error_messages={"required": "Tick the documents to move first."})


class GroupForm(forms.Form):
    name = forms.CharField(max_length=150)

    def clean_name(self) -> str:
        name = str(self.cleaned_data["name"]).strip()
        if Group.objects.filter(name__iexact=name).exists():
            raise forms.ValidationError("A group with this name exists already.")
        return name


class MemberAddForm(forms.Form):
    username = forms.CharField(max_length=150, label="Add a member",
                               widget=forms.TextInput(attrs={"placeholder": "username", "list": "usernames"}))

    def __init__(self, *args: Any, group: Group, **kwargs: Any) -> None:
        self.group = group
        super().__init__(*args, **kwargs)

    def clean_username(self) -> Any:
        username = str(self.cleaned_data["username"]).strip()
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise forms.ValidationError(f"No account is called {username}.")
        if user.groups.filter(pk=self.group.pk).exists():
            raise forms.ValidationError(f"{username} is in {self.group.name} already.")
        return user


def _check_id(platform: str, value: str, what: str) -> str:
    if platform == ChannelScope.Platform.SLACK:
        value = value.upper()
        if not _SLACK_ID.fullmatch(value):
            raise forms.ValidationError(f"A Slack {what} id is letters and digits, like T024BE7LD or C012AB3CD.")
    elif not _DISCORD_ID.fullmatch(value):
        raise forms.ValidationError(f"A Discord {what} id is a number (Copy ID in Discord's developer mode).")
    return value


class ChannelScopeForm(forms.Form):
    platform = forms.ChoiceField(choices=ChannelScope.Platform.choices)
    workspace = forms.CharField(max_length=64, label="Workspace or server id",
                                help_text="Slack: the team id (T…). Discord: the server (guild) id.")
    channel = forms.CharField(max_length=64, required=False, label="Channel id",
                              help_text="Slack: required (C…). Discord: empty for the whole server's default.")
    label = forms.CharField(max_length=100, required=False, help_text="A name people recognise, e.g. #support.")
    collections = _collections()

    def __init__(self, *args: Any, instance: ChannelScope | None = None, **kwargs: Any) -> None:
        self.instance = instance
        if instance is not None and "initial" not in kwargs:
            kwargs["initial"] = {"platform": instance.platform, "workspace": instance.workspace,
                                 "channel": instance.channel, "label": instance.label,
                                 "collections": list(instance.collections.all())}
        super().__init__(*args, **kwargs)
        self.fields["collections"].help_text = "None ticked: the channel answers from nothing (every question declines)."

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        platform = data.get("platform")
        if not platform:
            return data
        for name, what in (("workspace", "workspace" if platform == "slack" else "server"), ("channel", "channel")):
            value = str(data.get(name) or "").strip()
            if not value:
                if name == "channel" and platform == ChannelScope.Platform.SLACK:
                    self.add_error("channel", "A Slack scope needs its channel id (C…).")
                data[name] = ""
                continue
            try:
                data[name] = _check_id(platform, value, what)
            except forms.ValidationError as exc:
                self.add_error(name, exc)
        if not self.errors:
            taken = ChannelScope.objects.filter(platform=platform, workspace=data["workspace"], channel=data["channel"])
            if self.instance is not None:
                taken = taken.exclude(pk=self.instance.pk)
            if taken.exists():
                self.add_error("channel", "This channel has a scope already; edit that one.")
        return data


class AccountLinkForm(forms.Form):
    platform = forms.ChoiceField(choices=ChannelScope.Platform.choices)
    external_user = forms.CharField(max_length=100, label="Their Slack or Discord account",
                                    help_text="Slack: TEAM:USER (T024BE7LD:U012AB3CD). Discord: the user id.")
    user = forms.ModelChoiceField(queryset=get_user_model().objects.filter(is_active=True).order_by("username"),
                                  to_field_name="username", label="Lorebot user",
                                  widget=forms.TextInput(attrs={"placeholder": "username", "list": "usernames"}),
                                  error_messages={"invalid_choice": "No active account has this username."})

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        platform, external = data.get("platform"), str(data.get("external_user") or "").strip()
        if not platform or not external:
            return data
        try:
            if platform == ChannelScope.Platform.SLACK:
                team, _, user = external.partition(":")
                if not user:
                    raise forms.ValidationError("A Slack account is TEAM:USER, e.g. T024BE7LD:U012AB3CD.")
                external = f"{_check_id(platform, team, 'team')}:{_check_id(platform, user, 'user')}"
            else:
                external = _check_id(platform, external, "user")
        except forms.ValidationError as exc:
            self.add_error("external_user", exc)
            return data
        data["external_user"] = external
        existing = AccountLink.objects.filter(platform=platform, external_user=external).select_related("user").first()
        if existing is not None:
            self.add_error("external_user", f"This account is linked to {existing.user} already; delete that link first.")
        return data
