"""``report.html``: one self-contained page with the metric tables and studies side by side.

Everything is inline (CSS in a <style> element, images as base64 PNG data URIs), so the file
opens offline in any browser and can be mailed or archived alone.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from radllm.imaging import load_image

THUMBNAIL_SIZE = 192
_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.5em; }
table { border-collapse: collapse; margin: 0.5em 0; }
td, th { border: 1px solid #ccc; padding: 4px 8px; vertical-align: top; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.samples td { width: 25%; font-size: 0.9em; }
img { width: 192px; height: 192px; image-rendering: pixelated; background: #000; }
.note { color: #666; font-size: 0.9em; }
"""


@dataclass
class Sample:
    """One study shown side by side; missing parts are shown as "—"."""

    study_id: str
    reference_text: str = ""
    generated_text: str | None = None
    reference_image: str | None = None
    generated_image: str | None = None


def png_data_uri(path: str, size: int = THUMBNAIL_SIZE) -> str:
    """The image at `path` as an inline 8-bit grayscale PNG of `size` x `size` pixels."""
    pixels = load_image(path, size)[0].numpy()  # [size, size] in [0, 1]
    buffer = io.BytesIO()
    Image.fromarray(np.round(pixels * 255).astype(np.uint8), mode="L").save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "—" if value is None else html.escape(str(value))


def _metric_tables(metrics: Mapping[str, Any]) -> list[str]:
    groups: dict[str, list[tuple[str, Any]]] = {}
    for key, value in metrics.items():
        group, _, name = key.partition("/")
        groups.setdefault(group, []).append((name, value))
    parts = []
    for group, rows in groups.items():
        body = "".join(
            f"<tr><td>{html.escape(name)}</td><td class=num>{_value(value)}</td></tr>" for name, value in rows
        )
        parts.append(f"<h2>{html.escape(group)}</h2><table><tr><th>metric</th><th>value</th></tr>{body}</table>")
    return parts


def _image_cell(path: str | None) -> str:
    if path is None:
        return "—"
    return f'<img alt="" src="{png_data_uri(path)}">'


def render_page(title: str, metrics: Mapping[str, Any], samples: Sequence[Sample], notes: Sequence[str] = ()) -> str:
    """The complete HTML document."""
    rows = "".join(
        "<tr>"
        f"<td><b>{html.escape(s.study_id)}</b><br>{_image_cell(s.reference_image)}</td>"
        f"<td>{html.escape(s.reference_text) or '—'}</td>"
        f"<td>{'—' if s.generated_text is None else html.escape(s.generated_text)}</td>"
        f"<td>{_image_cell(s.generated_image)}</td>"
        "</tr>"
        for s in samples
    )
    sample_table = (
        "<h2>Samples</h2><table class=samples><tr><th>study / image</th><th>reference report</th>"
        f"<th>generated report</th><th>generated image</th></tr>{rows}</table>"
        if samples
        else ""
    )
    note_html = "".join(f"<p class=note>{html.escape(n)}</p>" for n in notes)
    return (
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>{note_html}{''.join(_metric_tables(metrics))}{sample_table}"
        "</body></html>\n"
    )
