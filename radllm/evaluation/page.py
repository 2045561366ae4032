"""``report.html``: one self-contained page that opens with what a reader wants first.

Sections, in order: the headline tables (reports, VQA, generated images: the model against the
baselines and controls, with bootstrap intervals, and the paired differences; the references'
coherence beside them), per-finding clinical F1 as a bar chart (the code-probe baseline among the
bars), the reports that contradict themselves or repeat a sentence with those sentences marked, the
learning curves of the training runs (`radllm.evaluation.curves`), sample studies side by side
(reference image and report, generated report and image), and last the full metric tables.

Everything is inline (CSS in a <style> element, charts as inline SVG, images as base64 PNG data
URIs), so the file opens offline in any browser and can be mailed or archived alone.
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

from radllm.evaluation.curves import RunLog, curve_panels
from radllm.evaluation.intervals import DIFF, METRICS
from radllm.evaluation.keys import REFERENCE, set_key, set_label
from radllm.labels import slug
from radllm.evaluation.svg import bar_chart, line_chart
from radllm.imaging import load_image
from radllm.labels import OBSERVATIONS

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
.ci { color: #777; font-size: 0.85em; white-space: nowrap; }
td.up { background: #e3f4e6; } td.down { background: #fbe4e2; }
.charts { display: flex; flex-wrap: wrap; gap: 1em; align-items: flex-start; }
"""

#: Headline tables, one per group: (group, [(metric, column header)]) in column order; a column
#: without any value is left out. Strict F1 and coherence come first: they are what a radiologist
#: would check; the CheXpert-convention F1 follows for comparison with papers.
HEADLINE_TABLES = (
    ("report", (
        ("ce_f1_micro_present_strict", "clinical F1 strict"),
        ("ce_f1_micro_present", "clinical F1 (CheXpert)"),
        ("ce_f1_micro_present_excl_no_finding", "F1 without No Finding"),
        ("ce_f1_macro_present", "F1 macro"),
        ("contradiction_rate", "self-contradicting"),
        ("repeat_rate", "repeating a sentence"),
        ("side_consistency", "same side in both sections"),
        ("side_match", "side right (found findings)"),
        ("distinct_fraction", "distinct reports"),
        ("bleu_4", "BLEU-4"),
    )),
    ("vqa", (("auroc_macro", "VQA AUROC macro"), ("auroc_micro", "VQA AUROC micro"), ("accuracy", "VQA accuracy"))),
    ("image", (
        ("gen_clinical_f1_micro", "generated images: F1 of requested findings"),
        ("gen_clinical_agreement", "agreement (mostly absent findings)"),
        ("fid", "FID"),
    )),
)
GROUP_TITLES = {"report": "Reports", "vqa": "VQA", "image": "Generated images"}


@dataclass
class FlaggedReport:
    """A generated report that contradicts itself or repeats a sentence: (section, sentence, why marked or None) in order."""

    study_id: str
    sentences: list[tuple[str, str, str | None]]


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


def prediction_sets(metrics: Mapping[str, Any]) -> list[str]:
    """Names of the scored prediction sets, "" (the model) first: every set has an ``eval/[<name>/]predictions`` key."""
    names = [key.split("/")[1] for key in metrics if key.startswith("eval/") and key.endswith("/predictions") and key.count("/") == 2]
    return ([""] if "eval/predictions" in metrics else []) + names


def _with_interval(metrics: Mapping[str, Any], key: str, signed: bool = False) -> str:
    value = metrics.get(key)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "—"
    fmt = "{:+.3f}" if signed else "{:.3f}"
    low, high = metrics.get(f"{key}/ci_low"), metrics.get(f"{key}/ci_high")
    interval = f" <span class=ci>[{fmt.format(low)}, {fmt.format(high)}]</span>" if low is not None and high is not None else ""
    return fmt.format(value) + interval


def headline_section(metrics: Mapping[str, Any]) -> str:
    """Per group: the model, the baselines and controls (and the references' coherence) on the
    headline metrics, then model − set with its paired interval."""
    sets = prediction_sets(metrics)
    if any(key.startswith(f"report/{REFERENCE}/") for key in metrics):
        sets.append(REFERENCE)
    parts = []
    for group, table in HEADLINE_TABLES:
        columns = [(m, t) for m, t in table if any(set_key(group, n, m) in metrics for n in sets)]
        if not columns:
            continue
        shown = [n for n in sets if any(set_key(group, n, m) in metrics for m, _ in columns)]
        header = "".join(f"<th>{html.escape(title)}</th>" for _, title in columns)
        rows = "".join(
            f"<tr><td>{html.escape(set_label(name))}</td>"
            + "".join(f"<td class=num>{_with_interval(metrics, set_key(group, name, m))}</td>" for m, _ in columns) + "</tr>"
            for name in shown
        )
        parts.append(f"<h3>{GROUP_TITLES[group]}</h3><table><tr><th>predictions</th>{header}</tr>{rows}</table>")
        diffs = [m for g, m in METRICS if g == group and any(f"{group}/{DIFF}/{n}/{m}" in metrics for n in sets)]
        compared = [n for n in sets if any(f"{group}/{DIFF}/{n}/{m}" in metrics for m in diffs)]
        if compared:
            titles = dict(table)
            header = "".join(f"<th>{html.escape(titles.get(m, m))}</th>" for m in diffs)
            rows = "".join(
                f"<tr><td>model − {html.escape(set_label(name))}</td>"
                + "".join(_difference_cell(metrics, f"{group}/{DIFF}/{name}/{m}") for m in diffs) + "</tr>"
                for name in compared
            )
            parts.append(f"<table><tr><th>difference</th>{header}</tr>{rows}</table>")
    if not parts:
        return ""
    resamples = metrics.get("eval/bootstrap")
    note = (f"<p class=note>Differences are paired: the same studies, resampled with replacement {resamples} times; 95 % "
            "percentile intervals. A green cell's interval lies above 0, a red one below (for the self-contradiction rate "
            "lower is better).</p>") if resamples else ""
    return f"<section id=headline><h2>Headline</h2>{''.join(parts)}{note}</section>"


def _difference_cell(metrics: Mapping[str, Any], key: str) -> str:
    low, high = metrics.get(f"{key}/ci_low"), metrics.get(f"{key}/ci_high")
    shade = " up" if low is not None and low > 0 else " down" if high is not None and high < 0 else ""
    return f"<td class='num{shade}'>{_with_interval(metrics, key, signed=True)}</td>"


def findings_section(metrics: Mapping[str, Any]) -> str:
    """Per-observation clinical F1 of every set with report keys, as grouped bars (observations with a positive reference)."""
    sets = [n for n in prediction_sets(metrics) if set_key("report", n, "n_studies") in metrics]
    if not sets:
        return ""
    first = sets[0]
    positives = {o: metrics.get(set_key("report", first, f"ce_n_positive/{slug(o)}")) for o in OBSERVATIONS}
    shown = [o for o in OBSERVATIONS if set_key("report", first, f"ce_f1/{slug(o)}") in metrics and positives[o] != 0]
    if not shown:
        return ""
    categories = [f"{o} ({positives[o]})" if positives[o] is not None else o for o in shown]
    series = {set_label(n): [metrics.get(set_key("report", n, f"ce_f1/{slug(o)}")) for o in shown] for n in sets}
    chart = bar_chart(categories, series, title="clinical F1 per finding")
    return (
        "<section id=findings><h2>Clinical F1 per finding</h2>"
        f"{chart}<p class=note>Observations with a positive reference among the scored studies; their number in brackets.</p></section>"
    )


def curves_section(runs: Sequence[RunLog]) -> str:
    """Line charts of the training runs' metrics.jsonl (train and eval loss, sample F1, grounding diagnostics)."""
    panels = curve_panels(runs)
    if not panels:
        return ""
    main = "".join(line_chart(p.lines, p.title, reference=p.reference) for p in panels if not p.detail)
    more = [line_chart(p.lines, p.title, reference=p.reference) for p in panels if p.detail]
    folded = f"<details><summary>{len(more)} more grounding charts</summary><div class=charts>{''.join(more)}</div></details>"
    folded = folded if more else ""
    names = ", ".join(html.escape(run.name) for run in runs)
    note = (f"<p class=note>runs: {names}. Grounding (own vs shuffled image, held-out studies): dashed lines mark a model that "
            "ignores its image (gain 0 nats, own image better for half the studies).</p>")
    return f"<section id=curves><h2>Learning curves</h2>{note}<div class=charts>{main}</div>{folded}</section>"


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
        parts.append(f"<h3>{html.escape(group)}</h3><table><tr><th>metric</th><th>value</th></tr>{body}</table>")
    return parts


def _image_cell(path: str | None) -> str:
    if path is None:
        return "—"
    return f'<img alt="" src="{png_data_uri(path)}">'


def samples_section(samples: Sequence[Sample]) -> str:
    """Studies side by side: reference image, reference report, generated report, generated image."""
    if not samples:
        return ""
    rows = "".join(
        "<tr>"
        f"<td><b>{html.escape(s.study_id)}</b><br>{_image_cell(s.reference_image)}</td>"
        f"<td>{html.escape(s.reference_text) or '—'}</td>"
        f"<td>{'—' if s.generated_text is None else html.escape(s.generated_text)}</td>"
        f"<td>{_image_cell(s.generated_image)}</td>"
        "</tr>"
        for s in samples
    )
    return (
        "<section id=samples><h2>Samples</h2><table class=samples><tr><th>study / image</th><th>reference report</th>"
        f"<th>generated report</th><th>generated image</th></tr>{rows}</table></section>"
    )


def flagged_section(flagged: Sequence[FlaggedReport], limit: int = 50) -> str:
    """The self-contradicting and repeating reports, offending sentences marked (the first `limit`)."""
    if not flagged:
        return ""
    items = []
    for report in flagged[:limit]:
        sentences = " ".join(
            f"<mark title='{html.escape(why)}'>{html.escape(text)}</mark> <span class=ci>[{html.escape(why)}]</span>" if why
            else html.escape(text)
            for _section, text, why in report.sentences
        )
        items.append(f"<tr><td><b>{html.escape(report.study_id)}</b></td><td>{sentences}</td></tr>")
    more = f" (the first {limit} of {len(flagged)})" if len(flagged) > limit else ""
    return (f"<section id=flagged><h2>Reports that contradict themselves or repeat a sentence: {len(flagged)}{more}</h2>"
            "<p class=note>Sentence by sentence, by the labeler: a finding affirmed (or called possible) in one sentence and "
            "negated in another on a compatible side, or a sentence said twice in one section. Strict F1 counts each "
            f"contradicted finding as an error.</p><table>{''.join(items)}</table></section>")


def render_page(
    title: str,
    metrics: Mapping[str, Any],
    samples: Sequence[Sample],
    notes: Sequence[str] = (),
    runs: Sequence[RunLog] = (),
    flagged: Sequence[FlaggedReport] = (),
) -> str:
    """The complete HTML document (sections in the order of the module docstring; empty ones are left out)."""
    note_html = "".join(f"<p class=note>{html.escape(n)}</p>" for n in notes)
    sections = [
        headline_section(metrics), findings_section(metrics), flagged_section(flagged), curves_section(runs), samples_section(samples),
        f"<section id=metrics><h2>All metrics</h2>{''.join(_metric_tables(metrics))}</section>",
    ]
    return (
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>{note_html}{''.join(sections)}"
        "</body></html>\n"
    )
