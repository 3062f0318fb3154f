"""The source form: a name, a kind, that kind's settings and a schedule, validated by the kind's connector.

The kinds are those registered in ragcore.connectors.KINDS, each with the `label` and `settings` its class
declares, so a new kind needs no change here. Each kind's settings are form fields named "<kind>-<setting>"
(one fieldset per kind on the page); the
chosen kind's become the source's `config`, and `Connector.from_config` checks them, so an error is
shown on the field it names. A URL's password (a Git token written in the URL) is never sent back to
the page: the field shows "***" in its place and keeps the stored one when left so.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

from django import forms

from console.models import Collection, Source
from console.syncing.service import validate_settings
from ragcore.connectors import ConnectorConfigError, Setting, available_kinds

MASK = "***"


UNITS = (("minutes", "minutes"), ("hours", "hours"), ("days", "days"))
_MINUTES = {"minutes": 1, "hours": 60, "days": 1440}


def field_name(kind: str, setting: str) -> str:
    return f"{kind}-{setting}"


def mask_url(value: str) -> str:
    """The URL with its password replaced by MASK (nothing secret goes back to a page)."""
    try:
        parts = urlsplit(value)
    except ValueError:
        return value
    if not parts.password:
        return value
    netloc = f"{parts.username}:{MASK}@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _unmask_url(value: str, stored: str) -> str:
    """The submitted URL, with the stored password put back where the page showed MASK."""
    try:
        parts, old = urlsplit(value), urlsplit(stored)
    except ValueError:
        return value
    if parts.password != MASK or not old.password:
        return value
    netloc = f"{parts.username}:{old.password}@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


class MaskedInput(forms.TextInput):
    """A text input that never sends a URL's password back to the page, even when re-showing a submitted form
    (as Django's PasswordInput does not re-render its value): the page shows MASK, and the stored one is kept."""

    def format_value(self, value: Any) -> str | None:
        formatted = super().format_value(value)
        return mask_url(formatted) if formatted else formatted


def _has_masked_password(value: str) -> bool:
    try:
        return urlsplit(value).password == MASK
    except ValueError:
        return False


def masked_config(source: Source) -> dict[str, Any]:
    """The source's settings as a page may show them."""
    return {k: mask_url(v) if isinstance(v, str) else v for k, v in (source.config or {}).items()}


class SourceForm(forms.Form):
    name = forms.CharField(max_length=100)
    kind = forms.ChoiceField(choices=(), widget=forms.RadioSelect)  # the registered kinds: see __init__
    schedule = forms.ChoiceField(choices=(("manual", "Manual: only when asked"), ("every", "Every")), initial="manual",
                                 widget=forms.RadioSelect)
    every = forms.IntegerField(min_value=1, max_value=100_000, required=False, initial=1)
    unit = forms.ChoiceField(choices=UNITS, initial="hours", required=False)
    # Where its documents go; changing it moves them (console.access.moves.move_source).
    collection = forms.ModelChoiceField(queryset=Collection.objects.order_by("name"), empty_label=None, required=False,
                                        help_text="Who may find its documents. Changing it moves them.")

    def __init__(self, *args: Any, instance: Source | None = None, **kwargs: Any) -> None:
        self.instance = instance
        if instance is not None and "initial" not in kwargs:
            kwargs["initial"] = self._initial_from(instance)
        super().__init__(*args, **kwargs)
        if instance is None:
            self.fields["collection"].initial = Collection.default().pk
        self.kinds = available_kinds()
        kind_field = self.fields["kind"]
        assert isinstance(kind_field, forms.ChoiceField)
        kind_field.choices = [(kind, cls.label) for kind, cls in self.kinds.items()]
        for kind, cls in self.kinds.items():
            for s in cls.settings:
                self.fields[field_name(kind, s.name)] = self._settings_field(s)

    @staticmethod
    def _settings_field(s: Setting) -> forms.Field:
        # Not required at the form level: only the chosen kind's settings count (checked in clean()).
        if s.kind == "lines":
            return forms.CharField(label=s.label, help_text=s.help, required=False,
                                   widget=forms.Textarea(attrs={"rows": 3}))
        if s.kind == "int":
            return forms.IntegerField(label=s.label, help_text=s.help, required=False, min_value=1)
        if s.kind == "float":
            return forms.FloatField(label=s.label, help_text=s.help, required=False, min_value=0)
        return forms.CharField(label=s.label, help_text=s.help, required=False, max_length=2000, widget=MaskedInput)

    @staticmethod
    def _initial_from(source: Source) -> dict[str, Any]:
        initial: dict[str, Any] = {"name": source.name, "kind": source.kind, "collection": source.collection_id}
        minutes = source.every_minutes
        if minutes:
            unit = "days" if minutes % 1440 == 0 else "hours" if minutes % 60 == 0 else "minutes"
            initial.update(schedule="every", every=minutes // _MINUTES[unit], unit=unit)
        for key, value in masked_config(source).items():
            initial[field_name(source.kind, key)] = "\n".join(value) if isinstance(value, list) else value
        return initial

    def kind_fieldsets(self) -> list[tuple[str, str, list[forms.BoundField]]]:
        """(kind, label, its bound fields) for the template, one fieldset per kind."""
        return [(kind, cls.label, [self[field_name(kind, s.name)] for s in cls.settings])
                for kind, cls in self.kinds.items()]

    def _settings_of(self, kind: str) -> tuple[Setting, ...]:
        cls = self.kinds.get(kind)
        return cls.settings if cls is not None else ()

    def clean_name(self) -> str:
        name = str(self.cleaned_data["name"]).strip()
        taken = Source.objects.filter(name__iexact=name)
        if self.instance is not None:
            taken = taken.exclude(pk=self.instance.pk)
        if taken.exists():
            raise forms.ValidationError("Another source already has this name.")
        return name

    def clean_collection(self) -> Collection:
        chosen = self.cleaned_data.get("collection")
        if chosen is None:  # not sent: where it is (an edit), or the default (a new source)
            return self.instance.collection if self.instance is not None else Collection.default()
        return chosen

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        kind = data.get("kind")
        if not kind:
            return data
        if data.get("schedule") == "every":
            if not data.get("every"):
                self.add_error("every", "How often? A number of minutes, hours or days.")
            else:
                data["every_minutes"] = int(data["every"]) * _MINUTES[data.get("unit") or "hours"]
        else:
            data["every_minutes"] = None
        config = self._config(kind, data)
        data["config"] = config
        for s in self._settings_of(kind):
            if s.required and not config.get(s.name):
                self.add_error(field_name(kind, s.name), "This setting is required.")
        if self.errors:
            return data
        try:
            data["description"] = validate_settings(kind, config, source_id=self.instance.pk if self.instance else None)
        except ConnectorConfigError as exc:
            message = str(exc).removeprefix(f"{exc.field}: ")
            target = field_name(kind, exc.field)
            if target in self.fields:
                self.add_error(target, message)
            elif exc.field == "kind":
                self.add_error("kind", message)
            else:  # a setting this form has no field for: named in the message
                self.add_error(None, str(exc))
        except ImportError:  # a kind registered but not installed on this server
            self.add_error("kind", f"The {kind} kind is not available on this server.")
        return data

    def _config(self, kind: str, data: dict[str, Any]) -> dict[str, Any]:
        stored = self.instance.config if self.instance is not None and self.instance.kind == kind else {}
        config: dict[str, Any] = {}
        for s in self._settings_of(kind):
            value = data.get(field_name(kind, s.name))
            if value in (None, ""):
                continue
            if s.kind == "lines":
                lines = [line.strip() for line in str(value).splitlines() if line.strip()]
                if lines:
                    config[s.name] = lines
            elif isinstance(value, str):
                value = value.strip()
                if value:
                    config[s.name] = _unmask_url(value, str(stored.get(s.name, "")))
                    if _has_masked_password(config[s.name]):  # nothing stored to put back (a new source)
                        self.add_error(field_name(kind, s.name), "Type the token again: it is never sent back "
                                                                 f"to the page, so the form showed {MASK} in its place.")
            else:
                config[s.name] = value
        return config

    def save(self, user: Any = None) -> Source:
        """The new or edited source (unsaved fields set from the form; the caller saves through the service).

        A new source gets its collection here; an edited one keeps its own until the caller moves it
        (`moved_to()`), with its documents.
        """
        source = self.instance or Source(created_by=user if getattr(user, "is_authenticated", False) else None,
                                         collection=self.cleaned_data["collection"])
        source.name = self.cleaned_data["name"]
        source.kind = self.cleaned_data["kind"]
        source.config = self.cleaned_data["config"]
        source.every_minutes = self.cleaned_data["every_minutes"]
        return source

    def moved_to(self) -> Collection | None:
        """The collection an edit asks for, when it is not the source's own."""
        chosen = self.cleaned_data["collection"]
        if self.instance is not None and chosen.pk != self.instance.collection_id:
            return chosen
        return None
