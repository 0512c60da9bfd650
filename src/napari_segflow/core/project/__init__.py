"""The top stage of the workflow: an annotation project over a dataset.

``store`` is the catalog of images (written once); ``state`` is one person's own SQLite file
(work per image, time, edits, AI pixels accepted or corrected, QA verdicts); ``claims`` says who
holds an image with one exclusively created file per claim; ``view`` aggregates everybody's
files read-only into the project's status; ``migrate`` moves projects made with one shared
database. ``project`` opens images for work and saves labels per annotator, atomically, in
production, calibration and QA modes; ``delivery`` exports the finished labels; ``report``
gives throughput and quality. A session writes only its own person's files, so annotators can
share a project folder over a network share.
"""

from napari_segflow.core.project.delivery import EXPORT_FORMATS, ExportSummary, export_project
from napari_segflow.core.project.project import (
    MODES,
    ImageEntry,
    PrelabelSource,
    Project,
    ProjectError,
    ProjectExistsError,
    WorkItem,
    ai_stats,
    create_project,
    is_project,
    open_project,
    read_image_file,
)
from napari_segflow.core.project.report import ProjectReport, project_report
from napari_segflow.core.project.store import (
    ACCEPTED,
    DONE,
    IN_PROGRESS,
    IN_REVIEW,
    REJECTED,
    SKIPPED,
    STATUSES,
    TODO,
    ProjectStore,
)

__all__ = [
    "ACCEPTED",
    "DONE",
    "EXPORT_FORMATS",
    "IN_PROGRESS",
    "IN_REVIEW",
    "MODES",
    "REJECTED",
    "SKIPPED",
    "STATUSES",
    "TODO",
    "ExportSummary",
    "ImageEntry",
    "PrelabelSource",
    "Project",
    "ProjectError",
    "ProjectExistsError",
    "ProjectReport",
    "ProjectStore",
    "WorkItem",
    "ai_stats",
    "create_project",
    "export_project",
    "is_project",
    "open_project",
    "project_report",
    "read_image_file",
]
