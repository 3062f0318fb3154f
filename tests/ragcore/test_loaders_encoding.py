"""Text encodings: UTF-8 and UTF-16 as before, and legacy code pages read instead of refused as binary."""

from __future__ import annotations

import random

import pytest

from ragcore.errors import CorruptFile, UnsupportedType
from ragcore.loaders import detect_kind, load_bytes

FRENCH = "Le café crème coûte très cher à Noël, garçon. Déjà vu, naïve façade.\n"


@pytest.mark.parametrize("encoding", ["latin-1", "cp1252"])
def test_a_western_legacy_text_file_is_read_not_called_binary(encoding: str) -> None:
    doc = load_bytes(FRENCH.encode(encoding), "menu.txt")
    assert doc.text == FRENCH.strip()


def test_cp1252_curly_quotes_dashes_and_the_euro_sign_survive() -> None:
    text = "He said \u201chello\u201d \u2014 it costs 5\u20ac, na\u00efve caf\u00e9."
    assert load_bytes(text.encode("cp1252"), "quote.txt").text == text


def test_a_short_file_with_one_high_byte_is_read_as_cp1252() -> None:
    assert load_bytes(b"Hello there\xff and caf\xe9", "latin1.txt").text == "Hello there\u00ff and caf\u00e9"


def test_a_cyrillic_cp1251_file_is_read() -> None:
    text = "Привет, как дела? Это тестовый документ на русском языке."
    assert load_bytes(text.encode("cp1251"), "ru.txt").text == text


def test_a_legacy_encoded_markdown_file_is_still_markdown() -> None:
    data = "# Réunion\n\nL\u2019équipe se réunit à 9h.\n".encode("cp1252")
    doc = load_bytes(data, "notes.md")
    assert (detect_kind(data, "notes.md"), doc.title, doc.text) == ("markdown", "Réunion", "L\u2019équipe se réunit à 9h.")


def test_utf8_is_never_second_guessed() -> None:
    assert load_bytes("naïve café — ok".encode(), "a.txt").text == "naïve café — ok"


def test_a_utf8_bom_with_an_invalid_byte_is_still_an_error() -> None:
    with pytest.raises(CorruptFile, match=r"^menu\.txt: not valid UTF-8 text \(invalid byte 0xe9 at offset 6\)"):
        load_bytes(b"\xef\xbb\xbfcaf\xe9 au lait", "menu.txt")


def test_random_bytes_are_still_binary() -> None:
    with pytest.raises(UnsupportedType, match="binary content, not text"):
        load_bytes(bytes(b for b in random.Random(3).randbytes(8192) if b), "junk.txt")
