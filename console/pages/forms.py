"""The console's forms: the upload and the filters of each list page."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django import forms
from django.core.files.uploadedfile import UploadedFile

from console.models import Collection, Conversation, Document, IngestJob


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    """A file field that takes several files from one `<input multiple>`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("widget", MultipleFileInput(attrs={"multiple": True}))
        # An empty file is refused on its own by the upload (named, with the others going through),
        # not by the form, which would refuse the whole selection.
        kwargs.setdefault("allow_empty_file", True)
        super().__init__(*args, **kwargs)

    def clean(self, data: Any, initial: Any = None) -> list[UploadedFile]:
        single = super().clean
        if isinstance(data, (list, tuple)):
            if not data and self.required:
                raise forms.ValidationError(self.error_messages["required"], code="required")
            return [single(d, initial) for d in data]
        return [single(data, initial)]


class UploadForm(forms.Form):
    """Files picked one by one and a folder's files; `chosen()` is all of them, in the order the browser sent them."""

    # A field named like Form.files (the request's uploads): Django's form metaclass moves it to base_fields.
    files = MultipleFileField(label="Files", required=False)  # type: ignore[assignment]
    folder = MultipleFileField(label="Folder", required=False)
    # Each file's path within the upload (a folder's relative paths), as a JSON list filled in by console.js.
    paths = forms.CharField(required=False, widget=forms.HiddenInput)
    # Where the files go: who may find them (the default collection unless chosen).
    collection = forms.ModelChoiceField(queryset=Collection.objects.order_by("name"), empty_label=None, required=False,
                                        label="Collection")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["collection"].initial = Collection.default().pk

    def clean_collection(self) -> Collection:
        return self.cleaned_data.get("collection") or Collection.default()

    def clean(self) -> dict[str, Any]:
        data = super().clean() or self.cleaned_data
        if not self.chosen():
            raise forms.ValidationError("Choose at least one file to upload.", code="required")
        return data

    def chosen(self) -> list[UploadedFile]:
        data = self.cleaned_data
        return [f for f in [*(data.get("files") or []), *(data.get("folder") or [])] if f]


def _choices(empty: str, choices: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [("", empty), *choices]


class DocumentFilterForm(forms.Form):
    q = forms.CharField(required=False, label="Search", widget=forms.TextInput(attrs={"placeholder": "Title or file name", "type": "search"}))
    status = forms.ChoiceField(required=False, choices=_choices("Current versions", Document.Status.choices))
    kind = forms.ChoiceField(required=False, label="Type", choices=[("", "Any type")])
    collection = forms.ModelChoiceField(queryset=Collection.objects.order_by("name"), required=False,
                                        empty_label="Any collection", to_field_name="key")

    def __init__(self, *args: Any, kinds: Sequence[str] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        kind = self.fields["kind"]
        assert isinstance(kind, forms.ChoiceField)
        kind.choices = [("", "Any type"), *((k, k) for k in kinds)]


class JobFilterForm(forms.Form):
    state = forms.ChoiceField(required=False, choices=_choices("Any state", IngestJob.State.choices))


class ConversationFilterForm(forms.Form):
    FEEDBACK = [("", "Any feedback"), ("up", "Has 👍 (positive)"), ("down", "Has 👎 (negative)")]

    surface = forms.ChoiceField(required=False, choices=_choices("Any surface", Conversation.Surface.choices))
    since = forms.DateField(required=False, label="Active from", widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, label="to", widget=forms.DateInput(attrs={"type": "date"}))
    feedback = forms.ChoiceField(required=False, choices=FEEDBACK)
    q = forms.CharField(required=False, label="Search", widget=forms.TextInput(attrs={"placeholder": "Title or user", "type": "search"}))
