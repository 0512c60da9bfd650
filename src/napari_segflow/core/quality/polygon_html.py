"""A self-contained HTML page for a polygon sufficiency report (one plot, embedded as PNG)."""

from __future__ import annotations

import base64
import html
import io

from napari_segflow.core.quality.polygons import PolygonReport

__all__ = ["plot_png", "report_html"]


def plot_png(report: PolygonReport, *, colors: dict[int, str] | None = None) -> bytes:
    """PNG bytes of the plot: per class, the IoU reached by ``object_fraction`` of its objects
    against the vertex budget, with the IoU target as a dashed line."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 4.8), dpi=100)
    ax = fig.add_subplot()
    for c in report.classes:
        kw = {"color": colors[c.class_id]} if colors and c.class_id in colors else {}
        ax.plot(report.budgets, c.iou_reached, marker="o", label=c.name, **kw)
    ax.axhline(report.iou_target, color="k", linestyle="--", linewidth=1, label="IoU target")
    ax.set_xlabel("vertex budget per object")
    ax.set_ylabel(f"IoU reached by {report.object_fraction:.0%} of objects")
    ax.set_xticks(report.budgets)
    low = min([report.iou_target - 0.05] + [min(c.iou_reached) for c in report.classes])
    ax.set_ylim(max(0.0, low - 0.02), 1.005)
    ax.grid(alpha=0.3)
    if report.classes:
        ncol = 2 if len(report.classes) > 12 else 1
        ax.legend(fontsize=7, ncol=ncol, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def report_html(
    report: PolygonReport,
    *,
    title: str = "Polygon sufficiency",
    sources: list[str] | None = None,
    colors: dict[int, str] | None = None,
) -> str:
    """The report as one HTML page: verdict table, cost and the IoU-vs-budget plot."""
    esc = html.escape
    png = base64.b64encode(plot_png(report, colors=colors)).decode("ascii")
    head = "".join(f"<th>k={k}</th>" for k in report.budgets)
    rows = []
    for c in report.classes:
        cells = "".join(
            f"<td title='median IoU {m:.3f}, {v:.1f} vertices on average'>{f:.2f}</td>"
            for f, m, v in zip(c.fraction_reaching, c.median_iou, c.mean_vertices, strict=True)
        )
        rows.append(
            f"<tr><td>{esc(c.name)}</td><td>{c.n_objects}</td>{cells}"
            f"<td>{c.median_exact_vertices:.0f}</td><td>{esc(c.verdict)}</td></tr>"
        )
    src = ""
    if sources:
        src = "<p>Masks: " + ", ".join(esc(s) for s in sources) + "</p>"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; max-width: 70em; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #bbb; padding: 3px 8px; }}
td {{ text-align: right; }} td:first-child, td:last-child {{ text-align: left; }}
</style></head><body>
<h1>{esc(title)}</h1>
{src}
<p>{report.n_images} image(s). An object is reproduced when its k-vertex polygon, rasterised on
the mask's grid, reaches IoU &ge; {report.iou_target:g}; a class suffices at the smallest budget
where at least {report.object_fraction:.0%} of its objects are reproduced. Cells: fraction of
objects reproduced.</p>
<table><tr><th>class</th><th>objects</th>{head}<th>exact outline (median vertices)</th>
<th>verdict</th></tr>
{"".join(rows)}
</table>
<p>Annotation cost, counted in vertices: {report.polygon_cost:,} with polygons for the classes
where they suffice, {report.mask_cost:,} for exact pixel masks (every corner of the pixel
outline); ratio <b>{report.cost_ratio:.2f}</b>.</p>
<img alt="IoU vs vertex budget per class" src="data:image/png;base64,{png}">
</body></html>
"""
