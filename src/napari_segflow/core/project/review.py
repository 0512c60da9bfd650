"""Calibration and QA of a project: scores against gold and reviewer corrections, stored.

:class:`ReviewMixin` is part of :class:`~napari_segflow.core.project.project.Project`; it uses
the project's store, label paths and :meth:`save_item`.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from napari_segflow.core.io.labels import label_files, read_labels
from napari_segflow.core.project.store import (
    ACCEPTED,
    DONE,
    IN_REVIEW,
    REJECTED,
)
from napari_segflow.core.project.work import ProjectError, WorkItem, json_counts

__all__ = ["ReviewMixin"]


class ReviewMixin:
    """Calibration mode and QA mode of a :class:`Project`."""

    def run_calibration(self, *, threshold: float = 0.75, dilation_ratio: float | None = 0.02):
        """Score every annotator's finished calibration labels against the gold set.

        Stores each (annotator, class) IoU and flag ("retrain before handling class X") and
        returns the :class:`~napari_segflow.core.quality.calibration.CalibrationReport`.
        """
        from napari_segflow.core.quality.calibration import calibrate

        if self.gold_dir is None:
            raise ProjectError("the project has no gold set (create it with --gold)")
        gold_files = label_files(self.gold_dir)
        rows = self.store.query(
            "SELECT i.stem, w.annotator FROM work w JOIN images i ON i.id = w.image_id "
            "WHERE w.mode='calibration' AND w.status=? ORDER BY w.annotator, i.id",
            (DONE,),
        )
        if not rows:
            raise ProjectError("no finished calibration images yet")
        gold = {s: read_labels(gold_files[s]) for s in {r["stem"] for r in rows}}
        annotations: dict[str, dict[str, np.ndarray]] = {}
        for r in rows:
            path = self.labels_path(r["stem"], annotator=r["annotator"], mode="calibration")
            annotations.setdefault(r["annotator"], {})[r["stem"]] = read_labels(path)
        report = calibrate(
            gold,
            annotations,
            taxonomy=self.taxonomy,
            threshold=threshold,
            dilation_ratio=dilation_ratio,
        )
        flagged = set(report.flagged)
        now = time.time()
        with self.store.transaction() as con:
            con.execute("DELETE FROM calibration")
            con.executemany(
                "INSERT INTO calibration VALUES (?, ?, ?, ?, ?)",
                (
                    (a, c, None if math.isnan(report.iou[i, k]) else float(report.iou[i, k]),
                     int((a, c) in flagged), now)
                    for i, a in enumerate(report.annotators)
                    for k, c in enumerate(report.classes)
                ),
            )  # fmt: skip
        return report

    def calibration_flags(self) -> dict[str, list[str]]:
        """``{annotator: ["retrain before handling class 'X' (IoU 0.61)", ...]}``."""
        out: dict[str, list[str]] = {}
        for r in self.store.query(
            "SELECT annotator, class, iou FROM calibration WHERE flagged=1 ORDER BY annotator"
        ):
            out.setdefault(r["annotator"], []).append(
                f"retrain before handling class {r['class']!r} (IoU {r['iou']:.2f})"
            )
        return out

    # -------------------------------------------------------------------- QA
    def draw_qa_batch(
        self,
        *,
        rates: Mapping[str, float] | None = None,
        rare_threshold: float = 0.05,
        seed: int = 0,
        annotator: str | None = None,
    ) -> int:
        """Draw a QA batch from the finished production images with the stratified sampler.

        Class frequencies come from the pixel counts stored at each save, so no label file is
        read. The drawn images turn ``in_review``. Returns the batch id.
        """
        from napari_segflow.core.quality.qa import stratified_sample

        sql = (
            "SELECT i.id, i.stem, i.annotator, w.class_pixels FROM images i JOIN work w ON "
            "w.image_id = i.id AND w.annotator = i.annotator AND w.mode='production' "
            "WHERE i.status=?"
        )
        params: list[Any] = [DONE]
        if annotator is not None:
            sql += " AND i.annotator=?"
            params.append(annotator)
        rows = self.store.query(sql, params)
        if not rows:
            raise ProjectError("no finished images to review")
        freqs = {r["stem"]: json_counts(r["class_pixels"]) for r in rows}
        sample = stratified_sample(freqs, rates=rates, rare_threshold=rare_threshold, seed=seed)
        by_stem = {r["stem"]: r for r in rows}
        with self.store.transaction() as con:
            cur = con.execute(
                "INSERT INTO qa_batches (created, seed) VALUES (?, ?)", (time.time(), seed)
            )
            batch = int(cur.lastrowid)
            for im in sample.images:
                r = by_stem[im.name]
                con.execute(
                    "INSERT INTO qa_items (batch_id, image_id, annotator, reasons) "
                    "VALUES (?, ?, ?, ?)",
                    (batch, r["id"], r["annotator"], json.dumps(list(im.reasons))),
                )
                con.execute("UPDATE images SET status=? WHERE id=?", (IN_REVIEW, r["id"]))
        return batch

    def review(
        self,
        item: WorkItem,
        verdict: str,
        labels: np.ndarray | None = None,
        provenance: np.ndarray | None = None,
        *,
        seconds: float = 0.0,
    ) -> None:
        """Record a reviewer's verdict (``accepted`` / ``rejected``) and correction.

        The correction is saved in the reviewer's own folder. A rejected image goes back to its
        annotator's queue; an accepted one is delivered with the reviewer's correction. When
        the batch has no pending image left its report is computed and stored.
        """
        if item.mode != "qa":
            raise ProjectError("open the image in QA mode to review it")
        if verdict not in (ACCEPTED, REJECTED):
            raise ProjectError(f"verdict {verdict!r}: use 'accepted' or 'rejected'")
        self.save_item(item, labels, provenance, seconds=seconds)
        q = self._qa_item(item.stem)
        image_id = self._image_id(item.stem)
        with self.store.transaction() as con:
            con.execute(
                "UPDATE qa_items SET verdict=?, reviewer=?, reviewed=? "
                "WHERE batch_id=? AND image_id=?",
                (verdict, item.annotator, time.time(), q["batch_id"], image_id),
            )
            con.execute("UPDATE images SET status=? WHERE id=?", (verdict, image_id))
            if verdict == REJECTED:
                con.execute(
                    "UPDATE work SET status=? WHERE image_id=? AND annotator=? AND "
                    "mode='production'",
                    (REJECTED, image_id, q["annotator"]),
                )
        pending = self.store.query(
            "SELECT COUNT(*) FROM qa_items WHERE batch_id=? AND verdict='pending'",
            (q["batch_id"],),
        )[0][0]
        if not pending:
            self.qa_batch_report(int(q["batch_id"]))

    def qa_batch_report(self, batch_id: int, *, threshold: float = 0.75) -> dict[str, Any]:
        """Per-class IoU of the annotators' labels against the reviewer's corrections.

        Returns (and stores) ``{"batch": id, "created": t, "reviewed": n, "overall":
        QABatchReport dict, "annotators": {name: QABatchReport dict}}`` over the reviewed images.
        """
        from napari_segflow.core.quality.qa import qa_batch_report

        rows = self.store.query(
            "SELECT i.stem, q.annotator, q.reviewer, b.created FROM qa_items q "
            "JOIN images i ON i.id = q.image_id JOIN qa_batches b ON b.id = q.batch_id "
            "WHERE q.batch_id=? AND q.verdict != 'pending' ORDER BY i.id",
            (batch_id,),
        )
        if not rows:
            raise ProjectError(f"QA batch {batch_id}: nothing reviewed yet")
        gold: dict[str, np.ndarray] = {}
        annotated: dict[str, dict[str, np.ndarray]] = {}
        for r in rows:
            gold[r["stem"]] = read_labels(
                self.labels_path(r["stem"], annotator=r["reviewer"], mode="qa")
            )
            annotated.setdefault(r["annotator"], {})[r["stem"]] = read_labels(
                self.labels_path(r["stem"], annotator=r["annotator"])
            )
        everyone = {k: v for d in annotated.values() for k, v in d.items()}
        overall = qa_batch_report(gold, everyone, taxonomy=self.taxonomy, threshold=threshold)
        per = {
            a: qa_batch_report(
                {k: gold[k] for k in d}, d, taxonomy=self.taxonomy, threshold=threshold
            ).to_dict()
            for a, d in annotated.items()
        }
        doc = {
            "batch": batch_id,
            "created": rows[0]["created"],
            "reviewed": len(rows),
            "overall": overall.to_dict(),
            "annotators": per,
        }
        with self.store.transaction() as con:
            con.execute("UPDATE qa_batches SET report=? WHERE id=?", (json.dumps(doc), batch_id))
        return doc

    def qa_batches(self) -> list[dict[str, Any]]:
        """Every batch: id, created, counts per verdict and its stored report (or None)."""
        out = []
        for b in self.store.query("SELECT id, created, seed, report FROM qa_batches ORDER BY id"):
            verdicts = {
                r["verdict"]: int(r["n"])
                for r in self.store.query(
                    "SELECT verdict, COUNT(*) AS n FROM qa_items WHERE batch_id=? "
                    "GROUP BY verdict",
                    (b["id"],),
                )
            }
            out.append(
                {
                    "batch": int(b["id"]),
                    "created": b["created"],
                    "seed": b["seed"],
                    "verdicts": verdicts,
                    "report": json.loads(b["report"]) if b["report"] else None,
                }
            )
        return out
