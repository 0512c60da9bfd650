"""One annotator's session as its own process, for the shared-folder tests.

``python project_worker.py PROJECT ANNOTATOR LOG ACTION``; it records every path the process
opens for writing, renames, links, removes or connects SQLite to (Python audit hooks) in the
JSON file LOG, with what it did. Actions:

- ``drain``: take images from the queue, paint one rectangle, finish them, until none is left;
- ``hold``: open the first free image, autosave once, print ``HELD <stem>`` and sleep (to be
  killed);
- ``look``: only read: status, progress, the image list, the next image, the report.
"""

from __future__ import annotations

import json
import os
import sys
import time

written: list[list[str]] = []


def _audit(event: str, args: tuple) -> None:
    if event == "open":
        path, mode, flags = args
        if isinstance(path, int):
            return
        writes = (mode is not None and any(c in mode for c in "wax+")) or (
            mode is None and flags is not None and flags & (os.O_WRONLY | os.O_RDWR)
        )
        if writes:
            written.append(["write", os.fsdecode(path)])
    elif event in ("os.rename", "os.replace", "os.link"):
        written.append([event, os.fsdecode(args[1])])
    elif event in ("os.remove", "os.unlink", "os.mkdir", "os.rmdir"):
        written.append([event, os.fsdecode(args[0])])
    elif event == "sqlite3.connect":
        written.append(["sqlite3.connect", os.fsdecode(args[0])])


def main() -> None:
    root, annotator, log, action = sys.argv[1:5]
    sys.addaudithook(_audit)
    from napari_segflow.core.project import DONE, ProjectError, open_project

    done: list[str] = []
    with open_project(root) as project:
        if action == "drain":
            after = None
            refused = 0
            while (stem := project.next_stem(annotator=annotator, after=after)) is not None:
                try:
                    item = project.open_item(stem, annotator=annotator)
                except ProjectError:  # the other annotator was faster
                    refused += 1
                    after = stem
                    continue
                labels = item.labels.copy()
                labels[10:30, 10 : 20 + len(done)] = 1
                project.save_item(item, labels, seconds=1.0, edits=1, status=DONE)
                done.append(stem)
                after = stem
            result = {"done": done, "refused": refused}
        elif action == "hold":
            stem = project.next_stem(annotator=annotator)
            item = project.open_item(stem, annotator=annotator)
            labels = item.labels.copy()
            labels[5:25, 5:25] = 1
            project.save_item(item, labels, seconds=2.0, edits=1)
            print("HELD", stem, flush=True)
            time.sleep(600)
            result = {}
        else:
            from napari_segflow.core.project import project_report

            result = {
                "status": project.status(),
                "progress": project.progress(),
                "images": len(project.images()),
                "next": project.next_stem(annotator=annotator),
                "report": project_report(project).to_dict()["annotators"],
            }
    with open(log, "w", encoding="utf-8") as f:
        json.dump({"result": result, "written": written}, f)


if __name__ == "__main__":
    main()
