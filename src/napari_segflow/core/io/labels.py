"""Read label images of any supported format, and pair label files across folders by name.

Calibration, QA and other batch jobs read folders of masks written by different tools:
class-index PNG, TIFF and NIfTI. :func:`read_labels` picks the reader from the file name;
:func:`label_files` and :func:`match_label_files` pair files by their name without extension.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = [
    "LABEL_SUFFIXES",
    "MAX_VOXELS",
    "READERS",
    "MatchedFiles",
    "label_files",
    "label_stem",
    "match_label_files",
    "read_label_file",
    "read_labels",
    "read_labels_like",
    "read_npy",
    "read_tiff",
]

#: File endings :func:`read_labels` understands (longest first so ``.nii.gz`` wins over ``.gz``).
LABEL_SUFFIXES = (".nii.gz", ".nii", ".png", ".tiff", ".tif")

#: Largest array (elements) read from the shape a TIFF or NPY header announces.
MAX_VOXELS = 1 << 31


def _bounded(p: Path, shape: tuple[int, ...]) -> None:
    n = 1
    for d in shape:
        n *= int(d)
    if n > MAX_VOXELS:
        raise ValueError(f"{p}: header announces {n} elements, above the limit of {MAX_VOXELS}")


def read_npy(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a ``.npy`` label array, memory-mapped, never unpickling anything.

    Raises
    ------
    ValueError
        For another format, a damaged or empty file, an empty or object array.
    """
    from .guard import check_format, check_not_partial

    p = Path(path)
    check_not_partial(p)
    check_format(p, {"npy"})
    try:
        arr = np.load(p, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise ValueError(f"{p}: not a readable .npy array ({exc})") from None
    if arr.size == 0:
        raise ValueError(f"{p}: empty array of shape {arr.shape}")
    return arr


def read_tiff(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a (multi-page) TIFF with tifffile, its announced size bounded first."""
    import tifffile

    from .guard import check_format, check_not_partial

    p = Path(path)
    check_not_partial(p)
    check_format(p, {"tiff"})
    try:
        with tifffile.TiffFile(p) as tf:
            if not tf.series:
                raise ValueError("no image in the file")
            _bounded(p, tuple(tf.series[0].shape))
            return tf.asarray()
    except ValueError as exc:
        if str(exc).startswith(str(p)):
            raise
        raise ValueError(f"{p}: cannot read TIFF ({exc})") from None
    except Exception as exc:  # tifffile raises several kinds for damaged files
        raise ValueError(f"{p}: cannot read TIFF ({type(exc).__name__}: {exc})") from None


def _read_png(p: Path) -> np.ndarray:
    from napari_segflow.core.io.png import read_png

    return read_png(p)


def _read_nifti(p: Path) -> np.ndarray:
    from napari_segflow.core.io.nifti import read_nifti

    return read_nifti(p).data


#: Label readers by file ending (longest first). Every reader here validates the content and
#: raises a one-line ``ValueError`` for a bad file; the hostile-input tests run each of them
#: over damaged, empty, mislabelled and oversized files, so a reader added here is tested too.
READERS = {
    ".nii.gz": _read_nifti,
    ".nii": _read_nifti,
    ".png": _read_png,
    ".tiff": read_tiff,
    ".tif": read_tiff,
    ".npy": read_npy,
}


def read_label_file(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a label array with the reader :data:`READERS` names for the file's ending."""
    p = Path(path)
    lower = p.name.lower()
    for suffix, reader in READERS.items():
        if lower.endswith(suffix):
            if not p.is_file():
                raise ValueError(f"{p}: no such file")
            return reader(p)
    raise ValueError(f"{p}: unsupported label file type (expected {', '.join(READERS)})")


def label_stem(path: str | os.PathLike[str]) -> str | None:
    """The name of a label file without its extension, or ``None`` for other files.

    Examples
    --------
    >>> label_stem("gold/case_01.nii.gz")
    'case_01'
    >>> label_stem("a/b.TIF")
    'b'
    >>> label_stem("notes.txt") is None
    True
    """
    name = Path(path).name
    lower = name.lower()
    for suffix in LABEL_SUFFIXES:
        if lower.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return None


def read_labels(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a label image (PNG, TIFF or NIfTI) as an integer array.

    NIfTI volumes keep the file's voxel order (i, j, k); PNG and TIFF keep (row, col[, ...]).

    Raises
    ------
    ValueError
        For a missing file, an unknown extension, unreadable contents or non-integer data.
    """
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"{p}: no such file")
    lower = p.name.lower()
    if not lower.endswith(LABEL_SUFFIXES):
        raise ValueError(f"{p}: unknown label file type (expected {', '.join(LABEL_SUFFIXES)})")
    arr = np.asarray(read_label_file(p))
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if arr.dtype.kind == "f":
        # some tools store labels as float; accept only whole numbers
        if not np.all(np.isfinite(arr)) or not np.array_equal(arr, np.round(arr)):
            raise ValueError(f"{p}: labels must be whole numbers, found fractional values")
        arr = arr.astype(np.int64)
    if arr.dtype.kind not in "iu":
        raise ValueError(f"{p}: labels must be integers, got dtype {arr.dtype}")
    return arr


def read_labels_like(
    path: str | os.PathLike[str], shape: tuple[int, ...], owner: str
) -> tuple[np.ndarray | None, str | None]:
    """Read a label file that must have a reference's ``shape``.

    Returns ``(array, None)``, or ``(None, problem)`` with a one-line problem that starts with
    ``owner`` and the file name (unreadable file, or a shape that differs from the reference).
    """
    p = Path(path)
    try:
        arr = read_labels(p)
    except ValueError as exc:
        return None, f"{owner}: {p.name}: {exc}"
    if arr.shape != tuple(shape):
        return None, f"{owner}: {p.name}: shape {arr.shape} differs from reference {tuple(shape)}"
    return arr, None


def label_files(folder: str | os.PathLike[str]) -> dict[str, Path]:
    """``{stem: path}`` for the label files directly inside ``folder`` (sorted by stem).

    Raises
    ------
    ValueError
        When ``folder`` is not a directory, or two files share a stem (``a.png`` and ``a.tif``).
    """
    d = Path(folder)
    if not d.is_dir():
        raise ValueError(f"{d}: not a folder")
    found: dict[str, Path] = {}
    for p in sorted(d.iterdir()):
        stem = label_stem(p)
        if stem is None or not p.is_file() or p.name.startswith("."):
            continue
        if stem in found:
            raise ValueError(f"{d}: two label files named {stem!r}: {found[stem].name}, {p.name}")
        found[stem] = p
    return dict(sorted(found.items()))


@dataclass
class MatchedFiles:
    """Label arrays read from a reference folder and other folders, paired by file name.

    Attributes
    ----------
    reference : dict
        ``{stem: array}`` of the reference (gold) folder.
    others : dict
        ``{folder name: {stem: array}}``, only files that exist, read and match the reference shape.
    problems : list of str
        One line per file that was missing, unreadable, extra or of the wrong shape.
    """

    reference: dict[str, np.ndarray] = field(default_factory=dict)
    others: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def match_label_files(
    reference: str | os.PathLike[str], others: Mapping[str, str | os.PathLike[str]]
) -> MatchedFiles:
    """Read the reference folder and every other folder, pairing files by name.

    A file missing from a folder, unreadable, or whose shape differs from the reference is
    reported by name in ``problems`` and skipped; the rest is still read.
    """
    out = MatchedFiles()
    ref_files = label_files(reference)
    if not ref_files:
        raise ValueError(f"{reference}: no label files (PNG, TIFF or NIfTI)")
    for stem, path in ref_files.items():
        try:
            out.reference[stem] = read_labels(path)
        except ValueError as exc:
            out.problems.append(f"reference {path.name}: {exc}")
    for name, folder in others.items():
        files = label_files(folder)
        got: dict[str, np.ndarray] = {}
        for stem, ref in out.reference.items():
            path = files.get(stem)
            if path is None:
                out.problems.append(f"{name}: {stem}: missing (no file named {stem}.*)")
                continue
            arr, problem = read_labels_like(path, ref.shape, name)
            if problem is not None:
                out.problems.append(problem)
                continue
            got[stem] = arr
        for stem in sorted(set(files) - set(ref_files)):
            out.problems.append(f"{name}: {files[stem].name}: no reference file of that name")
        out.others[name] = got
    return out
