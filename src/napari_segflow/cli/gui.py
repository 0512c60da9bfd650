"""``segflow gui``: open napari with a sample and the segflow widgets docked."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("gui", help="open napari with a sample image and the Taxonomy widget")
    p.add_argument(
        "--sample", default="landsat", help="sample key: landsat or nuclei (default landsat)"
    )
    p.add_argument("--screenshot", help="save a screenshot of the window here and exit")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import napari

    viewer = napari.Viewer(title="napari-segflow")
    viewer.open_sample("napari-segflow", args.sample)
    viewer.window.add_plugin_dock_widget("napari-segflow", "Taxonomy")
    if args.screenshot:
        viewer.screenshot(args.screenshot, canvas_only=False)
        viewer.close()
        return 0
    napari.run()
    return 0
