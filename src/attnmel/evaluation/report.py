"""A small, self-contained HTML report (images embedded), readable offline and easy to share.

Written with the standard library: a report is a list of escaped blocks, nothing that needs a
template engine.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from attnmel.io import atomic_write_text

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:72rem;padding:0 1rem;color:#1b1b1b}
h1{font-size:1.6rem}h2{font-size:1.25rem;margin-top:2rem;border-bottom:1px solid #ddd;padding-bottom:.2rem}
table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #ccc;padding:.25rem .6rem;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
.notice{background:#fff4e5;border-left:4px solid #e69500;padding:.6rem 1rem}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(11rem,1fr));gap:.8rem}
figure{margin:0}figure img{width:100%;image-rendering:auto;border-radius:3px}figcaption{font-size:.8rem;color:#444}
.row{display:flex;gap:1rem;flex-wrap:wrap}.row img{max-width:22rem}
td img{max-width:48rem;width:100%}td{vertical-align:middle}
.stack figure{margin:1rem 0}.stack img{max-width:100%;width:auto}
"""


def image_data_uri(image: Image.Image | str | Path) -> str:
    if isinstance(image, str | Path):
        image = Image.open(image)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


class HtmlReport:
    def __init__(self, title: str):
        self.title = title
        self.blocks: list[str] = []

    def heading(self, text: str) -> HtmlReport:
        self.blocks.append(f"<h2>{html.escape(text)}</h2>")
        return self

    def paragraph(self, text: str, notice: bool = False) -> HtmlReport:
        css = ' class="notice"' if notice else ""
        self.blocks.append(f"<p{css}>{html.escape(text)}</p>")
        return self

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> HtmlReport:
        """A table whose cells are values or images (a PIL image or a PNG path, shown inline)."""
        head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
        body = "".join("<tr>" + "".join(f"<td>{_cell(c)}</td>" for c in row) + "</tr>" for row in rows)
        self.blocks.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        return self

    def figures(self, items: Sequence[tuple[Image.Image | str | Path, str]], layout: str = "row") -> HtmlReport:
        """Captioned images, side by side (``row``), as a thumbnail ``grid``, or one under the other (``stack``)."""
        figures = "".join(
            f'<figure><img alt="{html.escape(caption)}" src="{image_data_uri(img)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
            for img, caption in items
        )
        self.blocks.append(f'<div class="{layout if layout in ("grid", "stack") else "row"}">{figures}</div>')
        return self

    def render(self) -> str:
        return (
            f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(self.title)}</title>"
            f"<style>{_STYLE}</style></head><body><h1>{html.escape(self.title)}</h1>{''.join(self.blocks)}</body></html>\n"
        )

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        atomic_write_text(path, self.render())
        return path


def _cell(value: Any) -> str:
    if isinstance(value, Image.Image) or (isinstance(value, Path) and value.suffix == ".png"):
        return f'<img alt="" src="{image_data_uri(value)}">'
    return html.escape(_fmt(value))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "n/a" if value != value else f"{value:.4f}"
    return "" if value is None else str(value)
