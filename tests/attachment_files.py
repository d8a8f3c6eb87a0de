"""Files for the attachment tests, made in memory: real images (Pillow), a real PDF with text
(written by hand, with a correct cross-reference table), a decompression bomb, and impostors."""

from __future__ import annotations

import io
import zlib
from pathlib import Path
from typing import Any

from PIL import Image


def image(fmt: str = "PNG", size: tuple[int, int] = (640, 480), color: str = "red") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format=fmt)
    return out.getvalue()


def bomb(size: tuple[int, int] = (20_000, 20_000)) -> bytes:
    """A PNG of 20,000 by 20,000 pixels (400 megapixels) that weighs about 50 KB: decoding it
    would take 400 MB of memory (a one-bit image compresses to almost nothing)."""
    out = io.BytesIO()
    Image.new("1", size).save(out, format="PNG", optimize=True)
    return out.getvalue()


def pdf(text: str = "The secret word is PAPAYA") -> bytes:
    """A one-page PDF whose page shows `text` in Helvetica."""
    stream = zlib.compress(f"BT /F1 18 Tf 72 720 Td ({text}) Tj ET".encode("latin-1"))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
        b"/Resources << /Font << /F1 5 0 R >> >> /Contents 4 0 R >>",
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


HTML = b"<!DOCTYPE html><html><body><script>alert(document.cookie)</script></body></html>"
TEXT = "회의 메모: 다음 주 화요일에 출시합니다.\nThe launch is on Tuesday.\n".encode()
ZIP = b"PK\x03\x04" + b"\x00" * 60  # a ZIP archive's signature: a type not on the list


def use_store(settings: Any, tmp_path: Path) -> Path:
    """Points the attachments storage at a folder of this test's own (changing STORAGES
    resets Django's storage handler); returns that folder."""
    root = tmp_path / "uploads"
    settings.STORAGES = {
        **settings.STORAGES,
        "attachments": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(root), "base_url": None},
        },
    }
    return root


def stored(root: Path) -> list[Path]:
    """Every file under the storage folder (a refusal must leave none, not even a part)."""
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []
