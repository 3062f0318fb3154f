"""Sample files for the loader tests, built in code: real PDFs with fpdf2, real .docx with python-docx."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

import docx
from docx.document import Document as DocxDocument
from fpdf import FPDF
from pypdf import PdfReader, PdfWriter


def write(directory: Path, name: str, data: bytes | str) -> Path:
    """Write a sample under `directory` and return its path."""
    path = directory / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def pdf_bytes(pages: Sequence[str], *, title: str = "") -> bytes:
    """A PDF with a real text layer, one page per string."""
    pdf = FPDF()
    if title:
        pdf.set_title(title)
    for text in pages:
        pdf.add_page()
        pdf.set_font("Helvetica", size=12)
        if text:
            pdf.multi_cell(0, 8, text)
    return bytes(pdf.output())


def scanned_pdf_bytes(pages: int = 2) -> bytes:
    """A PDF whose pages hold only drawn shapes, like a scan with no OCR text layer."""
    pdf = FPDF()
    for _ in range(pages):
        pdf.add_page()
        pdf.rect(20, 20, 120, 160, style="F")
    return bytes(pdf.output())


def encrypted_pdf_bytes(*, user_password: str, owner_password: str = "owner") -> bytes:
    """A text PDF encrypted with pypdf; an empty user password means anyone may open it."""
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf_bytes(["Top secret plans"]))))
    writer.encrypt(user_password, owner_password=owner_password)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def docx_bytes(build: Callable[[DocxDocument], object], *, title: str = "") -> bytes:
    """A .docx filled in by `build`, with an optional core-properties title."""
    document = docx.Document()
    document.core_properties.title = title
    build(document)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def handbook(document: DocxDocument) -> None:
    """Title, two chapters, a nested heading, a bullet list and a table with a merged cell."""
    document.add_heading("Employee Handbook", 0)
    document.add_paragraph("Welcome   to the   company.")
    document.add_heading("Leave", 1)
    document.add_paragraph("Everyone gets 25 days of leave.")
    document.add_heading("Sick leave", 2)
    document.add_paragraph("Call your manager before 9am.")
    document.add_paragraph("Rest", style="List Bullet")
    document.add_paragraph("Drink water", style="List Bullet")
    document.add_heading("Contacts", 1)
    table = document.add_table(rows=3, cols=3)
    for row, cells in enumerate([("Team", "Person", "Phone"), ("HR", "Ana", "555-0101"), ("IT", "Bo", "")]):
        for col, text in enumerate(cells):
            table.cell(row, col).text = text
    merged = table.cell(2, 1).merge(table.cell(2, 2))
    merged.text = "Bo (any time)"


def zip_bytes(files: dict[str, str]) -> bytes:
    """A ZIP archive holding the given text files."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return out.getvalue()


PNG_BYTES = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00\x90wS\xde"
EXE_BYTES = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" + b"\x00" * 48 + b"This program cannot be run in DOS mode."
