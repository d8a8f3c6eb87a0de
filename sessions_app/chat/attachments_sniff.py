"""What a file really is, read from its bytes: the allow-list, content sniffing, image checks and
thumbnails (Pillow), and the text taken out of PDF (pypdf) and text files.

Neither the file's name nor the type the browser claims is trusted: the type comes from the
content (`filetype`, pure Python, no system libmagic to install), and a file is accepted only
when that type, the name's extension and the allow-list agree. Text has no magic number, so a
file with none is text only when it is valid UTF-8 without NUL bytes and does not open like
HTML/XML (the WHATWG MIME-sniffing patterns a browser would render as a page).
"""

from __future__ import annotations

import io
import re
import warnings
from dataclasses import dataclass

import filetype
from django.utils.translation import gettext as _
from PIL import Image, ImageOps
from pypdf import PdfReader

# type -> extensions its name may end with (lower case)
ALLOWED: dict[str, tuple[str, ...]] = {
    "image/jpeg": (".jpg", ".jpeg"),
    "image/png": (".png",),
    "image/webp": (".webp",),
    "application/pdf": (".pdf",),
    "text/plain": (".txt", ".md"),
}
# Pillow's own name for each image type: the decoder must agree with the sniffer too.
PIL_FORMATS = {"image/jpeg": "JPEG", "image/png": "PNG", "image/webp": "WEBP"}
# A PDF's text is taken from at most this many pages: enough for the model's context, and a
# 5,000-page file cannot keep a request thread busy for minutes.
PDF_MAX_PAGES = 50

# WHATWG MIME Sniffing §7.1 "text/html" patterns (after leading whitespace), plus XML/SVG,
# which browsers also render as documents.
_HTML_START = re.compile(
    rb"^[\t\n\x0c\r ]*<(?:!doctype html|html|head|script|iframe|h1|div|font|table|a|style|"
    rb"title|b|body|br|p|!--|\?xml|svg)(?:[\t\n\x0c\r >/]|$)",
    re.IGNORECASE,
)


class Refused(Exception):
    """The file is not accepted; `message` says why and what is allowed (fit to show)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def allowed_sentence(max_bytes: int) -> str:
    return _(
        "You can attach JPEG, PNG or WebP images, PDF documents and plain-text files (.txt, .md) "
        "of up to %(size)s."
    ) % {"size": human_size(max_bytes)}


def human_size(size: int) -> str:
    """10 MB, 1.5 MB, 900 KB, 1000 bytes: the limit as a person reads it (binary units)."""
    for unit, scale in (("MB", 1024 * 1024), ("KB", 1024)):
        if size >= scale:
            # A no-break space: "10 MB" never splits across two lines.
            return f"{size / scale:.1f}".removesuffix(".0") + "\u00a0" + unit
    return f"{size}\u00a0bytes"


def extension_of(name: str) -> str:
    dot = name.rfind(".")
    return name[dot:].lower() if dot > 0 else ""


def looks_like_html(data: bytes) -> bool:
    return bool(_HTML_START.match(data[:1024].lstrip(b"\xef\xbb\xbf")))


def sniff(data: bytes, max_bytes: int) -> str:
    """The type the content says it is, if it is one of ALLOWED; else Refused (415)."""
    kind = filetype.guess(data[:8192])
    if kind is not None:
        if kind.mime in ALLOWED:
            return str(kind.mime)
        raise Refused(
            415,
            "UNSUPPORTED_TYPE",
            _("This file is %(type)s, which cannot be attached. ") % {"type": kind.mime}
            + allowed_sentence(max_bytes),
        )
    if b"\x00" in data:
        raise Refused(
            415,
            "UNSUPPORTED_TYPE",
            _("This file's type is not one that can be attached. ") + allowed_sentence(max_bytes),
        )
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        raise Refused(
            415,
            "UNSUPPORTED_TYPE",
            _("This file is neither an allowed image or PDF nor UTF-8 text. ")
            + allowed_sentence(max_bytes),
        ) from None
    if looks_like_html(data):
        raise Refused(
            415,
            "UNSUPPORTED_TYPE",
            _("This file holds HTML or XML, which cannot be attached. ")
            + allowed_sentence(max_bytes),
        )
    return "text/plain"


def agree(name: str, content_type: str, max_bytes: int) -> None:
    """The name's extension must be one of the sniffed type's (a PDF named .png is refused)."""
    extension = extension_of(name)
    if extension in ALLOWED[content_type]:
        return
    raise Refused(
        415,
        "TYPE_MISMATCH",
        _(
            "The file's name (%(extension)s) does not match what it holds (%(type)s); "
            "rename it or attach another file. "
        )
        % {"extension": extension or _("no extension"), "type": content_type}
        + allowed_sentence(max_bytes),
    )


@dataclass(frozen=True)
class ImageFacts:
    width: int
    height: int
    thumbnail: bytes  # WebP


def inspect_image(data: bytes, content_type: str, *, max_pixels: int, box: int) -> ImageFacts:
    """Checks the image's size before decoding it (a bomb is refused, never rendered), checks
    that Pillow reads the same format, and renders a WebP thumbnail that fits `box`."""
    too_big = Refused(
        400,
        "IMAGE_TOO_LARGE",
        _("This image is too large to open (more than %(mp)s megapixels).")
        % {"mp": max_pixels // 1_000_000},
    )
    unreadable = Refused(400, "BAD_FILE", _("This image could not be read; it may be damaged."))
    try:
        # Pillow warns past MAX_IMAGE_PIXELS and raises past twice that: as errors, both stop
        # here, before a single pixel is decoded.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                if image.format != PIL_FORMATS[content_type]:
                    raise unreadable
                width, height = image.size
                if width * height > max_pixels:
                    raise too_big
                image.draft("RGB", (box * 2, box * 2))  # JPEG: decode at a reduced scale
                image.load()
                rendered = ImageOps.exif_transpose(image)
                rendered.thumbnail((box, box))
                if rendered.mode not in ("RGB", "RGBA"):
                    rendered = rendered.convert("RGBA" if "A" in rendered.getbands() else "RGB")
                out = io.BytesIO()
                rendered.save(out, format="WEBP", quality=80)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise too_big from None
    except Refused:
        raise
    except Exception:
        # A damaged file can fail anywhere in a decoder (UnidentifiedImageError, OSError,
        # SyntaxError, struct errors...): whatever it is, the person's file is unreadable.
        raise unreadable from None
    return ImageFacts(width=width, height=height, thumbnail=out.getvalue())


def pdf_text(data: bytes, *, max_chars: int) -> str:
    """The text of the first pages of a PDF, capped; Refused if it is not a readable PDF."""
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            reader.decrypt("")  # "no password" PDFs open; others keep no text
        parts: list[str] = []
        total = 0
        for page in reader.pages[:PDF_MAX_PAGES]:
            text = page.extract_text() or ""
            parts.append(text)
            total += len(text)
            if total >= max_chars:
                break
    except Exception:
        # pypdf raises PyPdfError for what it recognises, and plain KeyError, TypeError or
        # RecursionError for some malformed files: each one means "not a readable PDF".
        raise Refused(
            400, "BAD_FILE", _("This PDF could not be read; it may be damaged or locked.")
        ) from None
    return "\n\n".join(p.strip() for p in parts if p.strip())[:max_chars]


def plain_text(data: bytes, *, max_chars: int) -> str:
    return data.decode("utf-8-sig")[:max_chars]
