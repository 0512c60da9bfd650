"""Class taxonomies: the classes of a project and the written rules for their boundaries.

A taxonomy file is YAML or JSON::

    name: streets
    ignore_id: 255            # optional: the id of unlabelled / "don't care" pixels
    classes:
      - {id: 0, name: road, color: "#804080", description: "Drivable surface"}
      - {id: 1, name: sidewalk, color: [244, 35, 232], ai_assist: false}
    rules:
      - classes: [road, sidewalk]
        text: "Kerb: road or sidewalk? -> sidewalk"
        resolve_to: sidewalk

Every problem in a file is reported as one :class:`TaxonomyError` that names the file, the entry
and what is wrong.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "MAX_CLASS_ID",
    "ConflictRule",
    "LabelClass",
    "Taxonomy",
    "TaxonomyError",
    "class_pixel_counts",
    "list_presets",
    "load_preset",
    "load_taxonomy",
    "parse_color",
    "save_taxonomy",
    "taxonomy_from_dict",
]

#: Largest class id a taxonomy may use (class-index PNGs are at most 16-bit).
MAX_CLASS_ID = 65535

_HEX = re.compile(r"^#?([0-9a-fA-F]{6})$")


#: Largest taxonomy file read (bytes).
MAX_TAXONOMY_BYTES = 16 * 1024 * 1024
#: Largest number of nodes a YAML document may expand to (aliases counted at every use), and
#: deepest nesting: bounds alias bombs and recursion without limiting real taxonomies.
MAX_YAML_NODES = 2_000_000
MAX_YAML_DEPTH = 64


class TaxonomyError(ValueError):
    """A taxonomy file or dictionary is invalid; the message says where and why."""


def _brief(value: Any, limit: int = 60) -> str:
    """A bounded ``repr`` of a value from a file, for error messages."""
    import reprlib

    r = reprlib.Repr()
    r.maxlevel, r.maxlist, r.maxdict, r.maxstring, r.maxother = 2, 4, 4, limit, limit
    text = r.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _YamlTooLarge(Exception):
    pass


class _BoundedLoader(yaml.SafeLoader):
    """A safe loader that refuses documents expanding past :data:`MAX_YAML_NODES` nodes
    (alias bombs) or nested deeper than :data:`MAX_YAML_DEPTH` (recursion), while composing.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._sizes: dict[int, int] = {}

    def compose_node(self, parent, index):  # noqa: ANN001, ANN201 (PyYAML's signature)
        if self.check_event(yaml.AliasEvent):
            node = super().compose_node(parent, index)
            if id(node) not in self._sizes:
                raise _YamlTooLarge("an alias refers to the node that contains it")
            return node
        self._depth += 1
        if self._depth > MAX_YAML_DEPTH:
            raise _YamlTooLarge(f"nested deeper than {MAX_YAML_DEPTH} levels")
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if isinstance(node, yaml.SequenceNode):
            size = 1 + sum(self._sizes[id(c)] for c in node.value)
        elif isinstance(node, yaml.MappingNode):
            size = 1 + sum(self._sizes[id(k)] + self._sizes[id(v)] for k, v in node.value)
        else:
            size = 1
        if size > MAX_YAML_NODES:
            raise _YamlTooLarge(f"expands to more than {MAX_YAML_NODES} values (aliases)")
        self._sizes[id(node)] = size
        return node


def _safe_yaml(text: str) -> Any:
    loader = _BoundedLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


@dataclass(frozen=True)
class LabelClass:
    """One class of a taxonomy.

    Parameters
    ----------
    id : int
        The integer written into label images for this class.
    name : str
        Unique, human-readable name.
    color : tuple of int
        RGB colour, each channel 0..255.
    description : str
        What belongs to the class (shown to annotators).
    ai_assist : bool
        Whether model proposals may be accepted into this class.
    """

    id: int
    name: str
    color: tuple[int, int, int]
    description: str = ""
    ai_assist: bool = True

    @property
    def hex_color(self) -> str:
        """The colour as ``#rrggbb``."""
        return "#{:02x}{:02x}{:02x}".format(*self.color)


@dataclass(frozen=True)
class ConflictRule:
    """A written rule for the boundary between two classes.

    Parameters
    ----------
    classes : tuple of str
        The two class names, in the order written in the file.
    text : str
        The rule as annotators read it.
    resolve_to : str or None
        The class that disputed pixels go to, when the rule names one.
    """

    classes: tuple[str, str]
    text: str
    resolve_to: str | None = None

    def involves(self, name: str) -> bool:
        """Whether the rule concerns class ``name``."""
        return name in self.classes

    @property
    def pair(self) -> frozenset[str]:
        """The unordered pair of class names."""
        return frozenset(self.classes)


@dataclass(frozen=True)
class Taxonomy:
    """An ordered set of classes with conflict rules.

    Examples
    --------
    >>> tax = load_preset("land-use")
    >>> tax.by_name("water").id
    4
    >>> tax.unlabeled_id
    0
    """

    name: str
    classes: tuple[LabelClass, ...]
    rules: tuple[ConflictRule, ...] = ()
    ignore_id: int | None = None
    description: str = ""
    _by_id: dict[int, LabelClass] = field(init=False, repr=False, compare=False)
    _by_name: dict[str, LabelClass] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_id", {c.id: c for c in self.classes})
        object.__setattr__(self, "_by_name", {c.name: c for c in self.classes})

    # ------------------------------------------------------------------ lookups
    @property
    def ids(self) -> tuple[int, ...]:
        """Class ids in file order."""
        return tuple(c.id for c in self.classes)

    @property
    def names(self) -> tuple[str, ...]:
        """Class names in file order."""
        return tuple(c.name for c in self.classes)

    @property
    def unlabeled_id(self) -> int | None:
        """The value of pixels nobody has labelled yet.

        ``ignore_id`` when the taxonomy has one, else 0 when no class uses 0, else ``None``.
        """
        if self.ignore_id is not None:
            return self.ignore_id
        return None if 0 in self._by_id else 0

    @property
    def valid_ids(self) -> frozenset[int]:
        """Every value a label image may hold: class ids and the unlabelled id."""
        extra = set() if self.unlabeled_id is None else {self.unlabeled_id}
        return frozenset(self.ids) | extra

    @property
    def max_id(self) -> int:
        """The largest value a label image of this taxonomy may hold."""
        return max(self.valid_ids)

    def by_id(self, class_id: int) -> LabelClass:
        """The class with id ``class_id``; ``KeyError`` if there is none."""
        return self._by_id[int(class_id)]

    def by_name(self, name: str) -> LabelClass:
        """The class called ``name``; ``KeyError`` if there is none."""
        return self._by_name[name]

    def has_id(self, class_id: int) -> bool:
        """Whether ``class_id`` is a class of this taxonomy."""
        return int(class_id) in self._by_id

    def rules_for(self, name: str) -> tuple[ConflictRule, ...]:
        """The rules that involve class ``name``."""
        return tuple(r for r in self.rules if r.involves(name))

    def rule_between(self, a: str, b: str) -> ConflictRule | None:
        """The rule written for the pair ``a``/``b`` (in either order), if any."""
        pair = frozenset((a, b))
        for rule in self.rules:
            if rule.pair == pair:
                return rule
        return None

    def color_dict(self) -> dict[int, tuple[float, float, float, float]]:
        """``{id: (r, g, b, a)}`` with channels in 0..1, for napari's direct colormaps."""
        return {c.id: (*(v / 255 for v in c.color), 1.0) for c in self.classes}

    def palette(self) -> dict[int, tuple[int, int, int]]:
        """``{id: (r, g, b)}`` in 0..255."""
        return {c.id: c.color for c in self.classes}

    def with_ai_assist(self, flags: Mapping[str, bool]) -> Taxonomy:
        """A copy with ``ai_assist`` set for the named classes."""
        unknown = set(flags) - set(self.names)
        if unknown:
            raise TaxonomyError(f"taxonomy {self.name!r}: unknown classes {sorted(unknown)}")
        classes = tuple(
            replace(c, ai_assist=bool(flags[c.name])) if c.name in flags else c
            for c in self.classes
        )
        return replace(self, classes=classes)

    # ---------------------------------------------------------------- serialise
    def to_dict(self) -> dict[str, Any]:
        """A plain dictionary that :func:`taxonomy_from_dict` reads back to an equal taxonomy."""
        out: dict[str, Any] = {"name": self.name}
        if self.description:
            out["description"] = self.description
        if self.ignore_id is not None:
            out["ignore_id"] = self.ignore_id
        out["classes"] = []
        for c in self.classes:
            entry: dict[str, Any] = {"id": c.id, "name": c.name, "color": c.hex_color}
            if c.description:
                entry["description"] = c.description
            if not c.ai_assist:
                entry["ai_assist"] = False
            out["classes"].append(entry)
        out["rules"] = []
        for r in self.rules:
            entry = {"classes": list(r.classes), "text": r.text}
            if r.resolve_to is not None:
                entry["resolve_to"] = r.resolve_to
            out["rules"].append(entry)
        return out


# ---------------------------------------------------------------------- parsing
def parse_color(value: Any) -> tuple[int, int, int]:
    """Read a colour given as ``"#rrggbb"``, ``"rrggbb"`` or ``[r, g, b]`` (0..255).

    Examples
    --------
    >>> parse_color("#ff8000")
    (255, 128, 0)
    >>> parse_color([0, 0, 142])
    (0, 0, 142)
    """
    if isinstance(value, str):
        m = _HEX.match(value.strip())
        if not m:
            raise ValueError(f"bad colour {_brief(value)}: expected '#rrggbb' or [r, g, b]")
        h = m.group(1)
        return (int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16))
    if isinstance(value, list | tuple) and len(value) == 3:
        if all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in value):
            return (int(value[0]), int(value[1]), int(value[2]))
    raise ValueError(f"bad colour {_brief(value)}: expected '#rrggbb' or three integers 0..255")


def _fail(source: str, where: str, what: str) -> TaxonomyError:
    return TaxonomyError(f"{source}: {where}: {what}")


def taxonomy_from_dict(data: Any, *, source: str = "<taxonomy>") -> Taxonomy:
    """Validate a parsed taxonomy document and build a :class:`Taxonomy`.

    Parameters
    ----------
    data : mapping
        The parsed YAML/JSON document.
    source : str
        Where it came from, used in error messages.

    Raises
    ------
    TaxonomyError
        Naming ``source``, the entry and the problem.
    """
    if not isinstance(data, Mapping):
        raise _fail(source, "top level", "expected a mapping with 'name' and 'classes'")
    unknown = set(data) - {"name", "classes", "rules", "ignore_id", "description"}
    if unknown:
        raise _fail(source, "top level", f"unknown keys {_brief(sorted(map(str, unknown)))}")
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise _fail(source, "'name'", "missing or not a non-empty string")
    raw_classes = data.get("classes")
    if not isinstance(raw_classes, list) or not raw_classes:
        raise _fail(source, "'classes'", "missing or not a non-empty list")

    ignore_id = data.get("ignore_id")
    if ignore_id is not None and (
        not isinstance(ignore_id, int)
        or isinstance(ignore_id, bool)
        or not 0 <= ignore_id <= MAX_CLASS_ID
    ):
        raise _fail(
            source, "'ignore_id'", f"{_brief(ignore_id)} is not an integer in 0..{MAX_CLASS_ID}"
        )

    classes: list[LabelClass] = []
    seen_ids: dict[int, str] = {}
    seen_names: set[str] = set()
    for i, entry in enumerate(raw_classes):
        where = f"classes[{i}]"
        if not isinstance(entry, Mapping):
            raise _fail(source, where, "expected a mapping with id, name and color")
        extra = set(entry) - {"id", "name", "color", "description", "ai_assist"}
        if extra:
            raise _fail(source, where, f"unknown keys {_brief(sorted(map(str, extra)))}")
        cname = entry.get("name")
        if not isinstance(cname, str) or not cname.strip():
            raise _fail(source, where, "'name' missing or not a non-empty string")
        where = f"classes[{i}] ({_brief(cname)})"
        cid = entry.get("id")
        if not isinstance(cid, int) or isinstance(cid, bool):
            raise _fail(source, where, f"'id' {_brief(cid)} is not an integer")
        if not 0 <= cid <= MAX_CLASS_ID:
            raise _fail(source, where, f"id {cid} out of range 0..{MAX_CLASS_ID}")
        if cid == ignore_id:
            raise _fail(source, where, f"id {cid} is the ignore_id")
        if cid in seen_ids:
            raise _fail(
                source, where, f"duplicate id {cid} (also used by {_brief(seen_ids[cid])})"
            )
        if cname in seen_names:
            raise _fail(source, where, f"duplicate name {_brief(cname)}")
        if "color" not in entry:
            raise _fail(source, where, "'color' missing")
        try:
            color = parse_color(entry["color"])
        except ValueError as exc:
            raise _fail(source, where, str(exc)) from None
        desc = entry.get("description", "") or ""
        if not isinstance(desc, str):
            raise _fail(source, where, "'description' is not a string")
        ai = entry.get("ai_assist", True)
        if not isinstance(ai, bool):
            raise _fail(source, where, f"'ai_assist' {_brief(ai)} is not true/false")
        seen_ids[cid] = cname
        seen_names.add(cname)
        classes.append(LabelClass(cid, cname, color, desc.strip(), ai))

    rules: list[ConflictRule] = []
    raw_rules = data.get("rules") or []
    if not isinstance(raw_rules, list):
        raise _fail(source, "'rules'", "expected a list")
    seen_pairs: set[frozenset[str]] = set()
    for i, entry in enumerate(raw_rules):
        where = f"rules[{i}]"
        if not isinstance(entry, Mapping):
            raise _fail(source, where, "expected a mapping with classes and text")
        extra = set(entry) - {"classes", "text", "resolve_to"}
        if extra:
            raise _fail(source, where, f"unknown keys {_brief(sorted(map(str, extra)))}")
        pair = entry.get("classes")
        if (
            not isinstance(pair, list | tuple)
            or len(pair) != 2
            or not all(isinstance(p, str) for p in pair)
        ):
            raise _fail(source, where, "'classes' must name exactly two classes")
        for p in pair:
            if p not in seen_names:
                raise _fail(source, where, f"unknown class {_brief(p)} in rule")
        if pair[0] == pair[1]:
            raise _fail(source, where, f"rule pairs class {_brief(pair[0])} with itself")
        if frozenset(pair) in seen_pairs:
            raise _fail(
                source, where, f"a rule for {_brief(pair[0])}/{_brief(pair[1])} is already written"
            )
        text = entry.get("text")
        if not isinstance(text, str) or not text.strip():
            raise _fail(source, where, "'text' missing or empty")
        resolve = entry.get("resolve_to")
        if resolve is not None and resolve not in pair:
            raise _fail(
                source, where, f"resolve_to {_brief(resolve)} is not one of {_brief(list(pair))}"
            )
        seen_pairs.add(frozenset(pair))
        rules.append(ConflictRule((pair[0], pair[1]), text.strip(), resolve))

    description = data.get("description", "") or ""
    if not isinstance(description, str):
        raise _fail(source, "'description'", "not a string")
    return Taxonomy(name.strip(), tuple(classes), tuple(rules), ignore_id, description.strip())


def _parse_text(text: str, source: str, suffix: str) -> Any:
    if suffix == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise _fail(source, f"line {exc.lineno}", f"not valid JSON ({exc.msg})") from None
        except RecursionError:
            raise _fail(source, "file", "refused: nested too deeply") from None
    try:
        return _safe_yaml(text)
    except _YamlTooLarge as exc:
        raise _fail(source, "file", f"refused: the YAML {exc}") from None
    except RecursionError:
        raise _fail(source, "file", "refused: nested too deeply") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "file"
        problem = getattr(exc, "problem", None) or "syntax error"
        raise _fail(source, where, f"not valid YAML ({problem})") from None


def load_taxonomy(path: str | os.PathLike[str]) -> Taxonomy:
    """Load a taxonomy from a YAML/JSON file, or a preset by name.

    Parameters
    ----------
    path : str or path-like
        A file path, or the name of a preset (see :func:`list_presets`).

    Raises
    ------
    TaxonomyError
        For a missing, unreadable or invalid file.
    """
    p = Path(path)
    if not p.exists() and str(path) in list_presets():
        return load_preset(str(path))
    source = str(p)
    try:
        size = p.stat().st_size
        if size > MAX_TAXONOMY_BYTES:
            raise _fail(source, "file", f"refused: {size} bytes, above {MAX_TAXONOMY_BYTES}")
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise _fail(source, "file", "not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise _fail(source, "file", f"cannot be read ({type(exc).__name__})") from None
    return taxonomy_from_dict(_parse_text(text, source, p.suffix.lower()), source=source)


def save_taxonomy(taxonomy: Taxonomy, path: str | os.PathLike[str]) -> Path:
    """Write ``taxonomy`` as YAML (or JSON for a ``.json`` path), atomically."""
    from napari_segflow.core.atomic import atomic_write_bytes

    p = Path(path)
    data = taxonomy.to_dict()
    if p.suffix.lower() == ".json":
        text = json.dumps(data, indent=2) + "\n"
    else:
        text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    atomic_write_bytes(p, text.encode("utf-8"))
    return p


# ---------------------------------------------------------------------- presets
def _preset_dir():
    return resources.files("napari_segflow.core.taxonomy").joinpath("presets")


def list_presets() -> list[str]:
    """Names of the taxonomy presets shipped with the package."""
    return sorted(
        f.name.removesuffix(".yaml") for f in _preset_dir().iterdir() if f.name.endswith(".yaml")
    )


def load_preset(name: str) -> Taxonomy:
    """Load the shipped preset ``name`` (e.g. ``"cityscapes"``)."""
    if name not in list_presets():
        raise TaxonomyError(
            f"unknown taxonomy preset {name!r}; presets: {', '.join(list_presets())}"
        )
    res = _preset_dir().joinpath(f"{name}.yaml")
    return taxonomy_from_dict(
        yaml.safe_load(res.read_text(encoding="utf-8")), source=f"preset {name}"
    )


def class_pixel_counts(labels: Any, taxonomy: Taxonomy) -> dict[int, int]:
    """Number of pixels of each class in ``labels`` (one pass, ``np.bincount``).

    Examples
    --------
    >>> import numpy as np
    >>> class_pixel_counts(np.array([[1, 1], [4, 0]]), load_preset("land-use"))
    {1: 2, 2: 0, 3: 0, 4: 1, 5: 0}
    """
    import numpy as np

    arr = np.asarray(labels).ravel()
    if arr.size == 0:
        return dict.fromkeys(taxonomy.ids, 0)
    if arr.dtype.kind not in "ui":
        arr = arr.astype(np.int64)
    lo = int(arr.min())
    counts = np.bincount((arr - lo) if lo < 0 else arr, minlength=taxonomy.max_id + 1)
    off = -lo if lo < 0 else 0
    return {c: int(counts[c + off]) if c + off < counts.size else 0 for c in taxonomy.ids}


def class_names_for(taxonomy: Taxonomy, ids: Iterable[int]) -> list[str]:
    """Names for ``ids``, with ``"<unknown id N>"`` for ids outside the taxonomy."""
    return [taxonomy.by_id(i).name if taxonomy.has_id(i) else f"<unknown id {i}>" for i in ids]
