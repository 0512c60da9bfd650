"""Calibration and QA of a project: scores against gold and reviewer corrections, stored.

:class:`ReviewMixin` is part of :class:`~napari_segflow.core.project.project.Project`; it uses
the project's state files, label paths and :meth:`save_item`. A QA batch is one file written
once by whoever draws it (``qa/batch-<n>.json``, created exclusively); a reviewer's verdicts
and the batch reports they complete go into the reviewer's own state file. The last
calibration run is ``calibration.json``, replaced atomically by whoever runs it (a report that
can be recomputed at any time from the annotators' files).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from napari_segflow.core.atomic import atomic_write_bytes, create_once
from napari_segflow.core.io.labels import label_files, read_labels
from napari_segflow.core.project.store import ACCEPTED, DONE, REJECTED
from napari_segflow.core.project.view import CODE, QA_DIR
from napari_segflow.core.project.work import ProjectError, WorkItem, json_counts

__all__ = ["CALIBRATION_FILE", "ReviewMixin"]

CALIBRATION_FILE = "calibration.json"


class ReviewMixin:
    """Calibration mode and QA mode of a :class:`Project`."""

    def _calibration_results(self) -> list[dict[str, Any]]:
        path = self.root / CALIBRATION_FILE
        if not path.is_file():
            return []
        return json.loads(path.read_text(encoding="utf-8"))["results"]

    def run_calibration(
        self,
        *,
        threshold: float = 0.75,
        dilation_ratio: float | None = 0.02,
        progress: Callable[[int, int], None] | None = None,
        cancel: Callable[[], bool] | None = None,
    ):
        """Score every annotator's finished calibration labels against the gold set.

        Stores each (annotator, class) IoU and flag ("retrain before handling class X") in
        ``calibration.json`` and returns the
        :class:`~napari_segflow.core.quality.calibration.CalibrationReport`. ``progress(done,
        total)`` is called after each image; ``cancel()`` returning True stops the run with
        ``InterruptedError`` before anything is stored.
        """
        from napari_segflow.core.quality.calibration import calibrate

        if self.gold_dir is None:
            raise ProjectError("the project has no gold set (create it with --gold)")
        gold_files = label_files(self.gold_dir)
        stem_of = dict(zip(self._ids.tolist(), self._stems, strict=True))
        rows = [
            (stem_of[r["image_id"]], name)
            for name, r in self.work_rows(mode="calibration")
            if r["status"] == DONE and r["image_id"] in stem_of
        ]
        if not rows:
            raise ProjectError("no finished calibration images yet")
        gold = {s: read_labels(gold_files[s]) for s in {s for s, _ in rows}}
        annotations: dict[str, dict[str, np.ndarray]] = {}
        for stem, name in sorted(rows, key=lambda r: (r[1], self._index[r[0]])):
            path = self.labels_path(stem, annotator=name, mode="calibration")
            annotations.setdefault(name, {})[stem] = read_labels(path)
        report = calibrate(
            gold,
            annotations,
            taxonomy=self.taxonomy,
            threshold=threshold,
            dilation_ratio=dilation_ratio,
            progress=progress,
            cancel=cancel,
        )
        if cancel is not None and cancel():  # pressed while the last image was scored
            raise InterruptedError("calibration cancelled")
        flagged = set(report.flagged)
        results = [
            {"annotator": a, "class": c,
             "iou": None if math.isnan(report.iou[i, k]) else float(report.iou[i, k]),
             "flagged": (a, c) in flagged}
            for i, a in enumerate(report.annotators)
            for k, c in enumerate(report.classes)
        ]  # fmt: skip
        doc = {"run": time.time(), "threshold": threshold, "results": results}
        atomic_write_bytes(self.root / CALIBRATION_FILE, json.dumps(doc, indent=1).encode())
        return report

    def calibration_flags(self) -> dict[str, list[str]]:
        """``{annotator: ["retrain before handling class 'X' (IoU 0.61)", ...]}``."""
        out: dict[str, list[str]] = {}
        for r in sorted(self._calibration_results(), key=lambda r: r["annotator"]):
            if r["flagged"]:
                out.setdefault(r["annotator"], []).append(
                    f"retrain before handling class {r['class']!r} (IoU {r['iou'] or 0.0:.2f})"
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

        view = self._view()
        ready = view.status == CODE[DONE]
        freqs: dict[str, dict[str, int]] = {}
        who: dict[str, tuple[int, str]] = {}
        for k, name, st in self._people(view, annotator):
            for image_id, pixels in st.rows(
                "SELECT image_id, class_pixels FROM work WHERE mode='production' "
                "AND status='done' ORDER BY image_id"
            ):
                j = int(np.searchsorted(self._ids, image_id))
                if j < len(self._ids) and self._ids[j] == image_id and ready[j]:
                    if view.holder[j] == k:
                        freqs[self._stems[j]] = json_counts(pixels)
                        who[self._stems[j]] = (int(image_id), name)
        if not freqs:
            raise ProjectError("no finished images to review")
        sample = stratified_sample(freqs, rates=rates, rare_threshold=rare_threshold, seed=seed)
        items = [
            {"stem": im.name, "image_id": who[im.name][0], "annotator": who[im.name][1],
             "reasons": list(im.reasons)}
            for im in sample.images
        ]  # fmt: skip
        folder = self.root / QA_DIR
        folder.mkdir(parents=True, exist_ok=True)
        batch = max((int(b["batch"]) for b in view.batches), default=0) + 1
        while True:
            doc = {"batch": batch, "created": time.time(), "seed": seed, "items": items}
            if create_once(folder / f"batch-{batch}.json", json.dumps(doc).encode()):
                return batch
            batch += 1  # somebody drew a batch at the same moment: take the next number

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

        The correction is saved in the reviewer's own folder and the verdict in the reviewer's
        own state file. A rejected image goes back to its annotator's queue; an accepted one
        is delivered with the reviewer's correction. When the batch has no pending image left
        its report is computed and stored (in the reviewer's state file too).
        """
        if item.mode != "qa":
            raise ProjectError("open the image in QA mode to review it")
        if verdict not in (ACCEPTED, REJECTED):
            raise ProjectError(f"verdict {verdict!r}: use 'accepted' or 'rejected'")
        self.save_item(item, labels, provenance, seconds=seconds)
        q = self._qa_item(item.stem)
        image_id = self._image_id(item.stem)
        with self._state(item.annotator, write=True).transaction() as con:
            con.execute(
                "UPDATE verdicts SET verdict=?, reviewed=? WHERE batch=? AND image_id=?",
                (verdict, time.time(), q["batch_id"], image_id),
            )
        view = self._view()
        batch = next(b for b in view.batches if int(b["batch"]) == q["batch_id"])
        pending = [
            it
            for it in batch["items"]
            if it["stem"] in self._index
            and view.verdict(q["batch_id"], self._index[it["stem"]]) == "pending"
        ]
        if not pending:
            doc = self.qa_batch_report(int(q["batch_id"]))
            with self._state(item.annotator, write=True).transaction() as con:
                con.execute(
                    "INSERT OR REPLACE INTO qa_reports VALUES (?, ?, ?)",
                    (int(q["batch_id"]), time.time(), json.dumps(doc)),
                )

    def qa_batch_report(self, batch_id: int, *, threshold: float = 0.75) -> dict[str, Any]:
        """Per-class IoU of the annotators' labels against the reviewer's corrections.

        Returns ``{"batch": id, "created": t, "reviewed": n, "overall": QABatchReport dict,
        "annotators": {name: QABatchReport dict}}`` over the reviewed images.
        """
        from napari_segflow.core.quality.qa import qa_batch_report

        view = self._view()
        batch = next((b for b in view.batches if int(b["batch"]) == batch_id), None)
        rows = []
        for it in [] if batch is None else sorted(batch["items"], key=lambda i: i["image_id"]):
            j = self._index.get(it["stem"])
            v = None if j is None else view.verdicts.get((batch_id, j))
            if v is not None and v["verdict"] != "pending":
                rows.append((it["stem"], it["annotator"], v["reviewer"]))
        if not rows:
            raise ProjectError(f"QA batch {batch_id}: nothing reviewed yet")
        gold: dict[str, np.ndarray] = {}
        annotated: dict[str, dict[str, np.ndarray]] = {}
        for stem, annotator, reviewer in rows:
            gold[stem] = read_labels(self.labels_path(stem, annotator=reviewer, mode="qa"))
            annotated.setdefault(annotator, {})[stem] = read_labels(
                self.labels_path(stem, annotator=annotator)
            )
        everyone = {k: v for d in annotated.values() for k, v in d.items()}
        overall = qa_batch_report(gold, everyone, taxonomy=self.taxonomy, threshold=threshold)
        per = {
            a: qa_batch_report(
                {k: gold[k] for k in d}, d, taxonomy=self.taxonomy, threshold=threshold
            ).to_dict()
            for a, d in annotated.items()
        }
        return {
            "batch": batch_id,
            "created": batch["created"],
            "reviewed": len(rows),
            "overall": overall.to_dict(),
            "annotators": per,
        }

    def accepted_by(self) -> dict[str, str]:
        """``{stem: reviewer}`` of every image whose newest QA verdict is ``accepted``."""
        view = self._view()
        out = {}
        for j, b in view.latest_batch.items():
            v = view.verdicts.get((b, j))
            if v is not None and v["verdict"] == ACCEPTED:
                out[self._stems[j]] = v["reviewer"]
        return out

    def qa_batches(self) -> list[dict[str, Any]]:
        """Every batch: id, created, counts per verdict and its stored report (or None)."""
        view = self._view()
        out = []
        for b in view.batches:
            verdicts: dict[str, int] = {}
            for it in b["items"]:
                j = self._index.get(it["stem"])
                if j is not None:
                    v = view.verdict(int(b["batch"]), j)
                    verdicts[v] = verdicts.get(v, 0) + 1
            out.append(
                {
                    "batch": int(b["batch"]),
                    "created": b["created"],
                    "seed": b["seed"],
                    "verdicts": verdicts,
                    "report": view.reports.get(int(b["batch"])),
                }
            )
        return out
