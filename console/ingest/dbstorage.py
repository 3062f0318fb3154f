"""A Django storage backend that keeps files in the database (the `Original` model), for originals at scale.

Originals are named by checksum, so a name always means the same bytes: saving a name that exists keeps
the one there, and names are never changed to make them unique.
"""

from __future__ import annotations

from typing import IO, Any

from django.apps import apps
from django.core.files.base import ContentFile
from django.core.files.storage import Storage
from django.utils.deconstruct import deconstructible


def _original_model() -> Any:
    # Looked up through the app registry: console.models imports the storage seam, so importing the
    # models here would be an import cycle.
    return apps.get_model("console", "Original")


@deconstructible
class DatabaseStorage(Storage):
    """Files as rows of `console.Original`: every host that reaches the database reads every file."""

    def _open(self, name: str, mode: str = "rb") -> ContentFile[bytes]:
        Original = _original_model()
        try:
            data = Original.objects.values_list("data", flat=True).get(pk=name)
        except Original.DoesNotExist:
            raise FileNotFoundError(f"original {name} is not in the database") from None
        return ContentFile(bytes(data), name=name)

    def _save(self, name: str, content: IO[Any]) -> str:
        Original = _original_model()
        data = content.read()
        Original.objects.get_or_create(checksum=name, defaults={"data": data, "size": len(data)})
        return name

    def get_available_name(self, name: str, max_length: int | None = None) -> str:
        return name  # content-addressed: the same name is the same file

    def exists(self, name: str) -> bool:
        Original = _original_model()
        return Original.objects.filter(pk=name).exists()

    def delete(self, name: str) -> None:
        Original = _original_model()
        Original.objects.filter(pk=name).delete()

    def size(self, name: str) -> int:
        Original = _original_model()
        return int(Original.objects.values_list("size", flat=True).get(pk=name))

    def listdir(self, path: str) -> tuple[list[str], list[str]]:
        Original = _original_model()
        return [], list(Original.objects.order_by("pk").values_list("checksum", flat=True))
