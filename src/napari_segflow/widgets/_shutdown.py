"""Stop a dock widget's workers when its window closes, and wait for them.

napari's ``viewer.close()`` deletes the dock widgets while a worker thread may still be running
(an embedding, a propagation). When that thread then emits its ``finished`` signal into deleted
Qt objects, the process aborts. :func:`stop_workers_on_close` asks the widget's workers to stop
and waits for them as soon as the widget's window (the napari main window once docked, or the
widget itself when it stands alone) receives its close event, before anything is deleted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

from qtpy.QtCore import QEvent, QObject
from qtpy.QtWidgets import QApplication, QWidget

__all__ = ["stop_workers_on_close", "wait_for_workers"]

log = logging.getLogger(__name__)

#: How long a closing window waits for a worker that cannot be interrupted (one model call).
WAIT_S = 120.0


def _started(worker) -> bool:
    from superqt.utils import WorkerBase

    return worker in WorkerBase._worker_set or bool(getattr(worker, "is_running", False))


def wait_for_workers(workers: Iterable, *, timeout_s: float = WAIT_S) -> bool:
    """Wait until ``workers`` have finished and their last signals were delivered.

    Returns ``False`` when some were still running after ``timeout_s`` seconds.
    """
    workers = [w for w in workers if w is not None]
    deadline = time.monotonic() + timeout_s
    while any(_started(w) for w in workers):
        if time.monotonic() > deadline:
            log.warning("worker threads still running after %.0f s at close", timeout_s)
            return False
        QApplication.processEvents()
        time.sleep(0.02)
    QApplication.processEvents()
    return True


class _CloseWatcher(QObject):
    def __init__(self, widget: QWidget, stop: Callable[[], Iterable]) -> None:
        super().__init__(widget)
        self._widget = widget
        self._stop = stop
        self._watched: set[int] = set()
        self._done = False
        self._watch_ancestors()

    def _watch_ancestors(self) -> None:
        w = self._widget
        while w is not None:
            if id(w) not in self._watched:
                w.installEventFilter(self)
                self._watched.add(id(w))
            w = w.parentWidget()

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 (Qt's name)
        kind = event.type()
        if kind in (QEvent.Type.ParentChange, QEvent.Type.Show):
            self._watch_ancestors()  # docked: the main window becomes an ancestor
        elif kind == QEvent.Type.Close and not self._done:
            self._done = True
            try:
                wait_for_workers(self._stop())
            except RuntimeError:  # Qt objects already gone: nothing left to wait for
                pass
        return False


def stop_workers_on_close(widget: QWidget, stop: Callable[[], Iterable]) -> None:
    """Call ``stop()`` when ``widget``'s window closes and wait for the workers it returns.

    ``stop`` asks the widget's running workers to end (``worker.quit()``, a cancel flag) and
    returns them.
    """
    _CloseWatcher(widget, stop)
