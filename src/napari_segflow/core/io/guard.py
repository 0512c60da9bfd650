"""Checks every reader and writer makes before trusting a file: content, size, identity.

A file's name and header are claims, not facts. The helpers here check the claims a reader
relies on before it allocates or decodes anything:

- :func:`sniff_format` / :func:`check_format`: the format by the file's first bytes, so a JPEG
  renamed ``.png`` is refused instead of read as labels;
- :func:`check_pixels`: a size a file announces (COCO ``height``/``width``, RLE ``size``) is
  bounded before an array of that size is made;
- :func:`check_not_partial`: a hidden temporary left by a killed writer is never read;
- :func:`refuse_overwrite`: no command writes onto one of its inputs, whether the two paths
  are spelled alike, resolve alike (``./a/../a.png``) or are the same file (hard links);
- :func:`brief`: a bounded ``repr`` for error messages, so a hostile structure is never
  formatted whole.

Every problem is a :class:`ValueError` with one line that names the file.
"""

from __future__ import annotations

import os
import reprlib
from collections.abc import Iterable
from pathlib import Path

from napari_segflow.core.atomic import is_partial

__all__ = [
    "MAX_PIXELS",
    "InputOverwriteError",
    "brief",
    "check_format",
    "check_not_partial",
    "check_pixels",
    "refuse_overwrite",
    "same_file",
    "sniff_format",
]

#: Largest 2D image (pixels) a reader allocates from a size the file announces (2^28: 16384²).
MAX_PIXELS = 1 << 28

_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"II+\x00", "tiff"),  # BigTIFF
    (b"MM\x00+", "tiff"),
    (b"\x1f\x8b", "gzip"),
    (b"\x93NUMPY", "npy"),
    (b"PK\x03\x04", "zip"),
    (b"PK\x05\x06", "zip"),  # an empty zip archive
    (b"GIF8", "gif"),
    (b"BM", "bmp"),
)

#: Formats a file name promises, by ending (longest first).
_BY_SUFFIX = (
    (".nii.gz", {"gzip"}),
    (".nii", {"nifti"}),
    (".png", {"png"}),
    (".tiff", {"tiff"}),
    (".tif", {"tiff"}),
    (".jpeg", {"jpeg"}),
    (".jpg", {"jpeg"}),
    (".npy", {"npy"}),
    (".npz", {"zip"}),
    (".json", {"json"}),
)


class InputOverwriteError(ValueError):
    """An output would replace one of the command's inputs."""


def brief(value: object, limit: int = 60) -> str:
    """A short ``repr`` of ``value`` for an error message, whatever its size or depth.

    Examples
    --------
    >>> brief("building")
    "'building'"
    >>> len(brief(list(range(10_000)))) <= 60
    True
    """
    r = reprlib.Repr()
    r.maxlevel, r.maxlist, r.maxdict, r.maxstring, r.maxother = 2, 4, 4, limit, limit
    text = r.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def sniff_format(path: str | os.PathLike[str]) -> str | None:
    """The format of a file by its first bytes: ``"png"``, ``"jpeg"``, ``"tiff"``, ``"gzip"``,
    ``"nifti"``, ``"npy"``, ``"zip"``, ``"json"``, ``"gif"``, ``"bmp"``; ``"empty"`` for an empty
    file; ``None`` when unknown.
    """
    with open(path, "rb") as fh:
        head = fh.read(352)
    if not head:
        return "empty"
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    if len(head) >= 348 and head[344:348] in (b"n+1\x00", b"ni1\x00"):
        return "nifti"
    if head.lstrip()[:1] in (b"{", b"["):
        return "json"
    return None


def expected_formats(path: str | os.PathLike[str]) -> set[str] | None:
    """The formats a file's name promises, or ``None`` for a name this module does not know."""
    lower = Path(path).name.lower()
    for suffix, formats in _BY_SUFFIX:
        if lower.endswith(suffix):
            return formats
    return None


def check_format(path: str | os.PathLike[str], expected: Iterable[str] | None = None) -> str:
    """Check that ``path`` holds what its name (or ``expected``) promises; return the format.

    Raises
    ------
    ValueError
        ``"<path>: empty file"``, or ``"<path>: content is JPEG, not PNG"`` and the like.
    """
    p = Path(path)
    want = set(expected) if expected is not None else expected_formats(p)
    try:
        found = sniff_format(p)
    except FileNotFoundError:
        raise ValueError(f"{p}: no such file") from None
    except IsADirectoryError:
        raise ValueError(f"{p}: is a folder, not a file") from None
    except OSError as exc:
        raise ValueError(f"{p}: cannot be read ({exc.strerror or exc})") from None
    if found == "empty":
        raise ValueError(f"{p}: empty file")
    if want and found not in want:
        names = "/".join(sorted(f.upper() for f in want))
        what = found.upper() if found else "not a recognised format"
        raise ValueError(f"{p}: content is {what}, not {names} as its name says")
    return found or ""


def check_not_partial(path: str | os.PathLike[str]) -> None:
    """Refuse an unfinished temporary file left by an interrupted write."""
    if is_partial(path):
        raise ValueError(
            f"{path}: an unfinished temporary file from an interrupted write; "
            "it is removed on the next run into its folder"
        )


def check_pixels(
    shape: Iterable[object], *, what: str, max_pixels: int = MAX_PIXELS
) -> tuple[int, ...]:
    """Validate a size announced by a file: positive integers whose product is bounded.

    Examples
    --------
    >>> check_pixels([4, 5], what="image")
    (4, 5)
    >>> check_pixels([100000, 100000], what="image")
    Traceback (most recent call last):
    ...
    ValueError: image: size 100000 x 100000 exceeds the limit of 268435456 pixels
    """
    dims = list(shape)
    out = []
    for d in dims:
        if isinstance(d, bool) or not isinstance(d, int) or d <= 0:
            raise ValueError(f"{what}: size {brief(dims)} must be positive integers")
        out.append(int(d))
    total = 1
    for d in out:
        total *= d
    if total > max_pixels:
        raise ValueError(
            f"{what}: size {' x '.join(map(str, out))} exceeds the limit of {max_pixels} pixels"
        )
    return tuple(out)


def same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Whether two paths name the same file or folder: same resolved path, or same inode."""
    pa, pb = Path(a), Path(b)
    try:
        if pa.resolve() == pb.resolve():
            return True
    except OSError:
        pass
    try:
        return os.path.samefile(pa, pb)
    except OSError:  # one of them does not exist (yet)
        return False


def refuse_overwrite(
    outputs: Iterable[str | os.PathLike[str]],
    inputs: Iterable[str | os.PathLike[str]],
    *,
    option: str = "--out",
) -> None:
    """Raise :class:`InputOverwriteError` when an output is one of the inputs.

    Files and folders are compared alike: an output folder equal to an input folder is refused
    too (``prelabel imgs --out imgs``).
    """
    ins = [Path(p) for p in inputs]
    for out in outputs:
        for src in ins:
            if same_file(out, src):
                raise InputOverwriteError(
                    f"{option} {out} would overwrite the input {src}; choose another {option}"
                )
