"""The project manager's report: throughput, AI pre-label use and QA quality over time.

Everything comes from the people's state files (no label file is read), so the report of a
large project takes as long as a few SQL queries per person.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from napari_segflow.core.project.project import Project
from napari_segflow.core.project.store import ACCEPTED, DONE, IN_REVIEW, REJECTED
from napari_segflow.core.project.work import json_counts
from napari_segflow.core.quality.report_files import ReportFiles, csv_float

__all__ = ["ProjectReport", "project_report"]

_FINISHED = (DONE, IN_REVIEW, ACCEPTED, REJECTED)


def _rate(num: float, den: float) -> float:
    return num / den if den else math.nan


def _num(v: float) -> float | None:
    return None if v is None or math.isnan(v) else round(float(v), 4)


@dataclass
class ProjectReport(ReportFiles):
    """Throughput and quality of a project.

    Attributes
    ----------
    name : str
    images : int
        Images in the project.
    status : dict
        ``{status: count}``.
    annotators : dict
        Per annotator: ``images`` finished, ``hours`` spent, ``images_per_hour``,
        ``seconds_per_image``, ``edits_per_image``, ``class_mix`` (share of labelled pixels per class), and the AI
        pre-label counts ``ai_pixels``, ``ai_accepted``, ``ai_corrected`` with the shares
        ``ai_accepted_share`` / ``ai_corrected_share`` (of the AI pixels).
    qa : list of dict
        Per QA batch in creation order: ``batch``, ``created``, ``reviewed``, ``accepted``,
        ``rejected``, ``per_class_iou``, ``mean_iou``, ``warnings``.
    """

    name: str
    images: int
    status: dict[str, int]
    annotators: dict[str, dict[str, Any]]
    qa: list[dict[str, Any]] = field(default_factory=list)

    file_stem: ClassVar[str] = "project_report"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "images": self.images,
            "status": self.status,
            "annotators": self.annotators,
            "qa_batches": self.qa,
        }

    def csv_table(self) -> tuple[list[str], list[list[Any]]]:
        """One row per annotator."""
        header = [
            "annotator", "images", "hours", "images_per_hour", "seconds_per_image",
            "ai_pixels", "ai_accepted_share", "ai_corrected_share",
        ]  # fmt: skip
        rows = [
            [
                a,
                d["images"],
                csv_float(d["hours"]),
                csv_float(d["images_per_hour"] or math.nan),
                csv_float(d["seconds_per_image"] or math.nan),
                d["ai_pixels"],
                csv_float(d["ai_accepted_share"] or math.nan),
                csv_float(d["ai_corrected_share"] or math.nan),
            ]  # fmt: skip
            for a, d in self.annotators.items()
        ]
        return header, rows

    def html_page(self) -> str:
        return _html(self)


def project_report(project: Project) -> ProjectReport:
    """Build the report of ``project`` from its database."""
    status = project.status()
    people: dict[str, dict[str, Any]] = {}
    # every person's own state file, read-only
    rows = [dict(r, annotator=name) for name, r in project.work_rows(mode="production")]
    for r in rows:
        d = people.setdefault(
            r["annotator"],
            {"images": 0, "seconds": 0.0, "edits": 0, "pixels": {}, "ai": [0, 0, 0]},
        )
        d["seconds"] += float(r["seconds"])  # time on unfinished images counts too
        if r["status"] in _FINISHED:
            d["images"] += 1
            d["edits"] += int(r["edits"])
            for k, v in json_counts(r["class_pixels"]).items():
                d["pixels"][k] = d["pixels"].get(k, 0) + v
            d["ai"][0] += int(r["ai_pixels"])
            d["ai"][1] += int(r["ai_accepted"])
            d["ai"][2] += int(r["ai_corrected"])
    annotators: dict[str, dict[str, Any]] = {}
    for a, d in sorted(people.items()):
        hours = d["seconds"] / 3600.0
        total_px = sum(d["pixels"].values())
        n_ai, acc, cor = d["ai"]
        annotators[a] = {
            "images": d["images"],
            "hours": round(hours, 4),
            "images_per_hour": _num(_rate(d["images"], hours)),
            "seconds_per_image": _num(_rate(d["seconds"], d["images"])),
            "edits_per_image": _num(_rate(d["edits"], d["images"])),
            "class_mix": {k: round(v / total_px, 4) for k, v in d["pixels"].items()}
            if total_px
            else {},
            "ai_pixels": n_ai,
            "ai_accepted": acc,
            "ai_corrected": cor,
            "ai_accepted_share": _num(_rate(acc, n_ai)),
            "ai_corrected_share": _num(_rate(cor, n_ai)),
        }
    qa = []
    for b in project.qa_batches():
        rep = b["report"] or {}
        overall = rep.get("overall", {})
        qa.append(
            {
                "batch": b["batch"],
                "created": b["created"],
                "reviewed": rep.get("reviewed", 0),
                "accepted": b["verdicts"].get("accepted", 0),
                "rejected": b["verdicts"].get("rejected", 0),
                "pending": b["verdicts"].get("pending", 0),
                "per_class_iou": overall.get("per_class_iou", {}),
                "mean_iou": overall.get("mean_iou"),
                "warnings": overall.get("warnings", []),
                "annotators": {
                    a: v.get("per_class_iou", {}) for a, v in rep.get("annotators", {}).items()
                },
            }
        )
    return ProjectReport(
        name=str(project.config.get("name", project.root.name)),
        images=status["images"],
        status=status["status"],
        annotators=annotators,
        qa=qa,
    )


# -------------------------------------------------------------------- figures
def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _throughput_figure(names: Sequence[str], per_hour: Sequence[float], ai_acc, ai_cor):
    fig = _figure(8.0, 3.0)
    ax1, ax2 = fig.subplots(1, 2)
    ax1.bar(list(names), [0 if v is None else v for v in per_hour], color="#4c72b0")
    ax1.set_ylabel("images per hour")
    ax1.set_title("Throughput per annotator")
    acc = [0 if v is None else v for v in ai_acc]
    cor = [0 if v is None else v for v in ai_cor]
    ax2.bar(list(names), acc, color="#55a868", label="accepted unchanged")
    ax2.bar(list(names), cor, bottom=acc, color="#c44e52", label="corrected")
    ax2.set_ylim(0, 1.05)
    ax2.set_ylabel("share of AI pre-label pixels")
    ax2.set_title("AI pre-labels")
    ax2.legend(fontsize=7)
    return fig


def _qa_figure(qa: list[dict[str, Any]]):
    fig = _figure(7.0, 3.2)
    ax = fig.add_subplot()
    classes = sorted({c for b in qa for c in b["per_class_iou"]})
    x = [b["batch"] for b in qa]
    for c in classes:
        y = [b["per_class_iou"].get(c) for b in qa]
        ax.plot(x, [math.nan if v is None else v for v in y], marker="o", label=c)
    ax.set_xticks(x)
    ax.set_xlabel("QA batch (in the order drawn)")
    ax.set_ylabel("IoU vs reviewer")
    ax.set_ylim(0, 1.05)
    ax.set_title("Per-class IoU per QA batch")
    ax.legend(fontsize=7, loc="lower left")
    return fig


def _img(fig, alt: str) -> str:
    from napari_segflow.core.quality.report_html import figure_png_base64

    return f"<img alt='{html.escape(alt)}' src='data:image/png;base64,{figure_png_base64(fig)}'>"


def _cell(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "<td>n/a</td>"
    return f"<td>{v:.3f}</td>" if isinstance(v, float) else f"<td>{html.escape(str(v))}</td>"


def _html(rep: ProjectReport) -> str:
    e = html.escape
    body = [f"<h1>Project {e(rep.name)}</h1>", f"<p>{rep.images} images: "]
    body.append(", ".join(f"{k.replace('_', ' ')} {v}" for k, v in rep.status.items()) + "</p>")
    body.append("<h2>Throughput and AI pre-labels</h2>")
    if rep.annotators:
        names = list(rep.annotators)
        body.append(
            _img(
                _throughput_figure(
                    names,
                    [rep.annotators[a]["images_per_hour"] for a in names],
                    [rep.annotators[a]["ai_accepted_share"] for a in names],
                    [rep.annotators[a]["ai_corrected_share"] for a in names],
                ),
                "throughput",
            )
        )
        cols = ["images", "hours", "images_per_hour", "seconds_per_image", "ai_pixels",
                "ai_accepted_share", "ai_corrected_share"]  # fmt: skip
        body.append("<table><tr><th>annotator</th>" + "".join(f"<th>{c}</th>" for c in cols))
        for a, d in rep.annotators.items():
            body.append(f"<tr><td>{e(a)}</td>" + "".join(_cell(d[c]) for c in cols) + "</tr>")
        body.append("</table><h3>Class mix (share of labelled pixels)</h3><table>")
        for a, d in rep.annotators.items():
            mix = ", ".join(f"{e(k)} {v:.1%}" for k, v in d["class_mix"].items())
            body.append(f"<tr><td>{e(a)}</td><td style='text-align:left'>{mix}</td></tr>")
        body.append("</table>")
    else:
        body.append("<p>No production work recorded yet.</p>")
    body.append("<h2>QA batches</h2>")
    if rep.qa:
        scored = [b for b in rep.qa if b["per_class_iou"]]
        if scored:
            body.append(_img(_qa_figure(scored), "per-class IoU per QA batch"))
        for b in rep.qa:
            body.append(
                f"<h3>Batch {b['batch']}</h3><p>reviewed {b['reviewed']}, accepted "
                f"{b['accepted']}, rejected {b['rejected']}, pending {b['pending']}; mean IoU "
                f"{'n/a' if b['mean_iou'] is None else format(b['mean_iou'], '.3f')}</p>"
            )
            for w in b["warnings"]:
                body.append(f"<div class='warn'>{e(w)}</div>")
    else:
        body.append("<p>No QA batch drawn yet.</p>")
    css = (
        "body{font-family:sans-serif;margin:2em;color:#222}table{border-collapse:collapse}"
        "td,th{border:1px solid #bbb;padding:3px 8px;text-align:right}th{background:#eee}"
        ".warn{background:#fff3cd;border:1px solid #e0c060;padding:.5em 1em;margin:.5em 0}"
        "img{max-width:100%;display:block;margin:1em 0}"
    )
    return (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'>"
        f"<title>Project {e(rep.name)}</title><style>{css}</style></head><body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )
