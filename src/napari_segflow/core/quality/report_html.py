"""Figures and self-contained HTML pages for calibration and QA reports.

This module only renders: it reads the attributes of the report handed to it and imports no
report module, so reports can call it without an import circle.

Figures are plain ``matplotlib.figure.Figure`` objects (no pyplot state), so the same code
serves the HTML report (embedded as base64 PNG) and the napari dock widget (a Qt canvas).
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "calibration_html",
    "class_bar_figure",
    "figure_png_base64",
    "heatmap_figure",
    "pairwise_figure",
    "qa_html",
]


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _threshold_cmap(threshold: float):
    """Red below the threshold, yellow-to-green above it, so flags stand out at a glance."""
    from matplotlib.colors import LinearSegmentedColormap

    t = min(max(threshold, 0.01), 0.99)
    return LinearSegmentedColormap.from_list(
        "segflow_threshold",
        [(0.0, "#8b0000"), (t - 0.001, "#f08080"), (t, "#ffe680"), (1.0, "#1a9850")],
    )


def heatmap_figure(
    values: np.ndarray,
    rows: Sequence[str],
    cols: Sequence[str],
    *,
    threshold: float,
    title: str = "IoU per annotator and class",
):
    """Annotator x class heatmap; cells below ``threshold`` are outlined, NaN cells grey."""
    values = np.asarray(values, dtype=float)
    fig = _figure(max(4.0, 1.0 + 0.55 * len(cols)), max(2.2, 1.2 + 0.45 * len(rows)))
    ax = fig.add_subplot()
    cmap = _threshold_cmap(threshold).with_extremes(bad="#d0d0d0")
    im = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(cols)), labels=list(cols), rotation=45, ha="right")
    ax.set_yticks(range(len(rows)), labels=list(rows))
    for r in range(values.shape[0]):
        for c in range(values.shape[1]):
            v = values[r, c]
            text = "-" if math.isnan(v) else f"{v:.2f}"
            ax.text(c, r, text, ha="center", va="center", fontsize=8)
            if not math.isnan(v) and v < threshold:
                ax.add_patch(_rect((c - 0.5, r - 0.5), edgecolor="black", linewidth=2, fill=False))
    bar = fig.colorbar(im, ax=ax, fraction=0.05)
    bar.ax.axhline(threshold, color="black", linewidth=2)
    bar.set_label(f"IoU (threshold {threshold:.2f})")
    ax.set_title(title)
    return fig


def _rect(xy, **kwargs):
    from matplotlib.patches import Rectangle

    return Rectangle(xy, 1, 1, **kwargs)


def class_bar_figure(
    values: np.ndarray,
    series: Sequence[str],
    classes: Sequence[str],
    *,
    threshold: float,
    title: str = "IoU per class",
):
    """Grouped bars: one group per class, one bar per series (annotator); threshold line."""
    values = np.atleast_2d(np.asarray(values, dtype=float))
    fig = _figure(max(4.5, 1.0 + 0.6 * len(classes) * max(1, len(series)) ** 0.5), 3.2)
    ax = fig.add_subplot()
    n = max(1, len(series))
    width = 0.8 / n
    x = np.arange(len(classes))
    for i, name in enumerate(series):
        ax.bar(x + (i - (n - 1) / 2) * width, values[i], width, label=name)
    ax.axhline(
        threshold, color="red", linestyle="--", linewidth=1.5, label=f"threshold {threshold:.2f}"
    )
    ax.set_xticks(x, labels=list(classes), rotation=45, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("IoU")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    # classes absent for a series have no bar (NaN), not a zero bar
    return fig


def pairwise_figure(values: np.ndarray, names: Sequence[str]):
    """Inter-annotator mean IoU matrix."""
    values = np.asarray(values, dtype=float)
    fig = _figure(max(3.2, 1.5 + 0.6 * len(names)), max(2.8, 1.2 + 0.6 * len(names)))
    ax = fig.add_subplot()
    im = ax.imshow(np.ma.masked_invalid(values), cmap="viridis", vmin=0, vmax=1)
    ax.set_xticks(range(len(names)), labels=list(names), rotation=45, ha="right")
    ax.set_yticks(range(len(names)), labels=list(names))
    for r in range(values.shape[0]):
        for c in range(values.shape[1]):
            v = values[r, c]
            ax.text(
                c,
                r,
                "-" if math.isnan(v) else f"{v:.2f}",
                ha="center",
                va="center",
                color="white" if not math.isnan(v) and v < 0.6 else "black",
                fontsize=8,
            )
    fig.colorbar(im, ax=ax, fraction=0.05, label="mean IoU")
    ax.set_title("Inter-annotator mean IoU")
    return fig


def figure_png_base64(fig) -> str:
    """The figure as a base64 PNG string (for ``<img src="data:image/png;base64,...">``)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return base64.b64encode(buf.getvalue()).decode("ascii")


_CSS = """
body { font-family: sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 13px; }
th, td { border: 1px solid #bbb; padding: 3px 8px; text-align: right; }
th { background: #eee; } td.name { text-align: left; font-weight: bold; }
td.flag { background: #f4a6a6; font-weight: bold; } td.na { color: #999; }
.warn { background: #fff3cd; border: 1px solid #e0c060; padding: 0.5em 1em; margin: 0.5em 0; }
img { max-width: 100%; display: block; margin: 1em 0; }
"""


def _page(title: str, body: list[str]) -> str:
    return (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def _img(fig, alt: str) -> str:
    return f"<img alt='{html.escape(alt)}' src='data:image/png;base64,{figure_png_base64(fig)}'>"


def _cell(v: float, threshold: float | None) -> str:
    if v is None or math.isnan(v):
        return "<td class='na'>n/a</td>"
    cls = " class='flag'" if threshold is not None and v < threshold else ""
    return f"<td{cls}>{v:.3f}</td>"


def _table(rows: Sequence[str], cols: Sequence[str], values: Any, threshold: float | None) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    out = [f"<table><tr><th></th>{head}</tr>"]
    for r, name in enumerate(rows):
        cells = "".join(_cell(float(values[r][c]), threshold) for c in range(len(cols)))
        out.append(f"<tr><td class='name'>{html.escape(name)}</td>{cells}</tr>")
    out.append("</table>")
    return "".join(out)


def calibration_html(report: Any) -> str:
    """The calibration report as one HTML page with embedded figures.

    ``report`` is a :class:`~napari_segflow.core.quality.calibration.CalibrationReport` or any
    object with its attributes.
    """
    t = report.threshold
    body = [
        "<h1>Annotator calibration</h1>",
        f"<p>Threshold: IoU {t:.2f}. Per-class numbers are dataset-level (intersections and "
        "unions summed over all gold images). Flagged cells are outlined/red: retrain that "
        "annotator on that class.</p>",
    ]
    if report.flagged:
        items = "".join(f"<li>{html.escape(a)}: {html.escape(c)}</li>" for a, c in report.flagged)
        body.append(f"<div class='warn'><b>Flagged (annotator, class)</b><ul>{items}</ul></div>")
    else:
        body.append("<p>No annotator is below the threshold on any class.</p>")
    cols = [*report.classes, "mean IoU"]
    values = np.column_stack([report.iou, report.mean_iou])
    body += ["<h2>IoU</h2>", _table(report.annotators, cols, values, t)]
    body += [
        "<h2>Boundary IoU</h2>",
        _table(report.annotators, report.classes, report.boundary_iou, None),
    ]
    body.append(
        _img(heatmap_figure(report.iou, report.annotators, report.classes, threshold=t), "heatmap")
    )
    body.append(
        _img(
            class_bar_figure(report.iou, report.annotators, report.classes, threshold=t),
            "per-class bar chart",
        )
    )
    body += [
        "<h2>Inter-annotator agreement</h2>",
        _table(report.annotators, report.annotators, report.pairwise_mean_iou, None),
        _img(pairwise_figure(report.pairwise_mean_iou, report.annotators), "pairwise matrix"),
    ]
    per_img_rows = []
    for name, scores in report.per_image_mean_iou.items():
        for img, v in scores.items():
            per_img_rows.append(
                f"<tr><td class='name'>{html.escape(name)}</td>"
                f"<td class='name'>{html.escape(img)}</td>{_cell(v, None)}</tr>"
            )
    body += [
        "<h2>Per-image mean IoU</h2><p>Each image scored on its own (not the dataset-level "
        "numbers above).</p>",
        "<table><tr><th>annotator</th><th>image</th><th>mean IoU</th></tr>"
        + "".join(per_img_rows)
        + "</table>",
    ]
    if report.problems:
        items = "".join(f"<li>{html.escape(p)}</li>" for p in report.problems)
        body.append(f"<h2>Left out</h2><ul>{items}</ul>")
    return _page("Annotator calibration", body)


def qa_html(report: Any) -> str:
    """The QA batch report as one HTML page with an embedded per-class bar chart.

    ``report`` is a :class:`~napari_segflow.core.quality.qa.QABatchReport` or any object with
    its attributes.
    """
    t = report.threshold
    body = [
        "<h1>QA batch report</h1>",
        f"<p>{len(report.images)} images; dataset-level mean IoU "
        f"{report.mean_iou:.3f} (per-image mean {report.per_image_mean_iou_mean:.3f}); "
        f"class threshold {t:.2f}.</p>",
    ]
    for w in report.warnings:
        body.append(f"<div class='warn'>{html.escape(w)}</div>")
    values = np.array([[report.per_class_iou[c] for c in report.classes]])
    body.append(_table(["batch"], report.classes, values, t))
    body.append(
        _img(
            class_bar_figure(
                values, ["batch"], report.classes, threshold=t, title="QA IoU per class"
            ),
            "per-class bar chart",
        )
    )
    if report.problems:
        items = "".join(f"<li>{html.escape(p)}</li>" for p in report.problems)
        body.append(f"<h2>Left out</h2><ul>{items}</ul>")
    return _page("QA batch report", body)
