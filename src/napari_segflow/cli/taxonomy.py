"""``segflow taxonomy``: list presets, validate and show taxonomy files."""

from __future__ import annotations

import argparse

from napari_segflow.core.taxonomy import list_presets, load_taxonomy, save_taxonomy


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("taxonomy", help="list presets, validate or show a taxonomy")
    p.add_argument("action", choices=["presets", "validate", "show", "copy"])
    p.add_argument("source", nargs="?", help="taxonomy file or preset name")
    p.add_argument("dest", nargs="?", help="for 'copy': where to write the taxonomy (YAML/JSON)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.action == "presets":
        for name in list_presets():
            tax = load_taxonomy(name)
            print(
                f"{name:22s} {len(tax.classes):3d} classes  {len(tax.rules):2d} rules  {tax.description}"
            )
        return 0
    if not args.source:
        raise ValueError(f"'taxonomy {args.action}' needs a taxonomy file or preset name")
    tax = load_taxonomy(args.source)
    if args.action == "validate":
        print(f"{args.source}: valid ({len(tax.classes)} classes, {len(tax.rules)} rules)")
    elif args.action == "show":
        print(f"{tax.name}: {tax.description}")
        ignore = f", ignore id {tax.ignore_id}" if tax.ignore_id is not None else ""
        print(f"unlabelled id {tax.unlabeled_id}{ignore}")
        for c in tax.classes:
            ai = "" if c.ai_assist else "  [AI off]"
            print(f"  {c.id:>5}  {c.hex_color}  {c.name}{ai}  {c.description}")
        for r in tax.rules:
            to = f" -> {r.resolve_to}" if r.resolve_to else ""
            print(f"  rule {r.classes[0]} / {r.classes[1]}{to}: {r.text}")
    else:
        if not args.dest:
            raise ValueError("'taxonomy copy' needs a destination file")
        save_taxonomy(tax, args.dest)
        print(f"wrote {args.dest}")
    return 0
