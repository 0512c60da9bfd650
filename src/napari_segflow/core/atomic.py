"""Atomic file writes: a temporary file in the target folder, then a rename.

An interrupted export never leaves a half-written file under the final name. The temporary
file is hidden and marked: ``.<stem>.<pid>-<random>.part<suffixes>``. A process killed while
writing leaves it behind; :func:`remove_stale_parts` deletes such leftovers (their writer is no
longer running) and :func:`is_partial` lets readers refuse them.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = [
    "atomic_path",
    "create_once",
    "atomic_write_bytes",
    "atomic_write_with",
    "is_partial",
    "remove_stale_parts",
]

# ".<stem>.<pid>-<random>.part<suffixes>", and the older ".<stem>.<random>.part<suffixes>"
_PART = re.compile(r"^\..*\.(?:(?P<pid>\d+)-)?[^.]*\.part(?:\..*)?$")

#: Leftovers whose writer cannot be identified are removed once they are this old (seconds).
STALE_AFTER_S = 24 * 3600


def is_partial(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is an unfinished temporary file of :func:`atomic_path`.

    Examples
    --------
    >>> is_partial(".scene.4242-k2j1.part.tif"), is_partial("scene.tif")
    (True, False)
    """
    return _PART.match(Path(path).name) is not None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists, owned by someone else (or unknowable): keep its file
    return True


def remove_stale_parts(
    folder: str | os.PathLike[str], *, older_than: float = STALE_AFTER_S
) -> list[Path]:
    """Delete temporaries left in ``folder`` by writers that were killed; return them.

    A temporary is stale when the process that wrote it (its pid is in the name) is no longer
    running on this machine, or, when the name has no pid or the writer may run elsewhere,
    when it is older than ``older_than`` seconds. Files of running writers are kept.
    """
    d = Path(folder)
    removed: list[Path] = []
    if not d.is_dir():
        return removed
    now = time.time()
    me = os.getpid()
    for p in d.iterdir():
        m = _PART.match(p.name)
        if m is None or not p.is_file():
            continue
        pid = m.group("pid")
        try:
            age = now - p.stat().st_mtime
        except OSError:
            continue
        dead = pid is not None and int(pid) != me and not _pid_alive(int(pid))
        if dead or age > older_than:
            with contextlib.suppress(OSError):
                p.unlink()
                removed.append(p)
    return removed


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` when the block succeeds.

    On any exception the temporary file is removed and ``path`` is left as it was.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> with atomic_path(d / "a.txt") as tmp:
    ...     _ = tmp.write_text("hello")
    >>> (d / "a.txt").read_text()
    'hello'
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    # keep the real suffix last so libraries that pick a format by extension still work
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{final.stem}.{os.getpid()}-",
        suffix=f".part{''.join(final.suffixes)}",
        dir=final.parent,
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp creates owner-only files; a delivered file gets the usual umask permissions
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and return the path."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    return Path(path)


def atomic_write_with(path: str | os.PathLike[str], write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` and move the result onto ``path`` atomically."""
    with atomic_path(path) as tmp:
        write(tmp)
    return Path(path)


def _write_synced(path: Path, data: bytes, flags: int) -> None:
    fd = os.open(path, flags, 0o644)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def create_once(path: str | os.PathLike[str], data: bytes) -> bool:
    """Create ``path`` holding ``data`` only if it does not exist yet; False if it does.

    Of several processes (on one machine or sharing a network folder) creating the same name,
    exactly one gets True. The file appears complete: it is written under a hidden temporary
    name and hard-linked to ``path`` (the link fails if the name exists). On a file system
    without hard links it falls back to an exclusive create, where a reader may briefly see the
    file still empty.

    Examples
    --------
    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "claim.json"
    >>> create_once(p, b"first"), create_once(p, b"second"), p.read_bytes()
    (True, False, b'first')
    """
    path = Path(path)
    tmp = path.parent / f".{path.name}.{os.getpid()}-{time.monotonic_ns()}.part"
    _write_synced(tmp, data, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
            raise
        try:  # no hard links here
            _write_synced(path, data, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        except FileExistsError:
            return False
        return True
    finally:
        tmp.unlink(missing_ok=True)
