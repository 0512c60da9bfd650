"""Several annotators on one project folder, as separate processes: each writes only its own files.

The sessions run ``project_worker.py`` in their own Python processes on real pet photos. Each
records (audit hooks) every path it opens for writing, renames, links, removes or opens with
SQLite; besides, snapshots of the folder's mtimes before and after a session show which files
it changed.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from napari_segflow.core.io.labels import read_labels
from napari_segflow.core.project import (
    DONE,
    IN_PROGRESS,
    REJECTED,
    TODO,
    ProjectError,
    create_project,
    open_project,
)
from napari_segflow.core.project.store import ProjectStore
from napari_segflow.core.taxonomy import taxonomy_from_dict

WORKER = Path(__file__).with_name("project_worker.py")
TAX = taxonomy_from_dict(
    {
        "name": "pets",
        "classes": [
            {"id": 1, "name": "pet", "color": "#ff7f0e"},
            {"id": 2, "name": "background", "color": "#1f77b4"},
        ],
    }
)


@pytest.fixture
def photos(tmp_path, shared_data):
    """Twelve real pet photos, linked (never copied)."""
    folder = tmp_path / "images"
    folder.mkdir()
    src = sorted((shared_data / "pets_oxford" / "images").glob("*.jpg"))[:12]
    for p in src:
        os.symlink(p, folder / p.name)
    return folder


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1")
    src = str(Path(__file__).resolve().parents[3] / "src")
    env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")])
    return env


def _start(root, annotator, log, action):
    return subprocess.Popen(
        [sys.executable, str(WORKER), str(root), annotator, str(log), action],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc, log):
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    return json.loads(Path(log).read_text())


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(root)): (p.stat().st_mtime_ns, p.stat().st_size)
        for p in root.rglob("*")
        if p.is_file()
    }


def _changed(before, after) -> set[str]:
    return {k for k, v in after.items() if before.get(k) != v} | (set(before) - set(after))


def _owner(root: Path, rel: str) -> str | None:
    """Whose file a project path is: state/<name>.sqlite*, labels/<name>/..., claims by content."""
    parts = Path(rel).parts
    if parts[0] == "state":
        return parts[1].split(".sqlite")[0]
    if parts[0] == "labels":
        return parts[1]
    if parts[0] == "claims" and not parts[1].startswith("."):
        return json.loads((root / rel).read_text())["annotator"]
    return None


def _writes(root: Path, log: dict) -> list[tuple[str, str]]:
    """(event, path inside the project) of a worker's writes; read-only SQLite opens left out."""
    top = os.path.realpath(root)
    out = []
    for event, path in log["written"]:
        if event == "sqlite3.connect" and "mode=ro" in path:
            continue
        p = os.path.realpath(path.removeprefix("file://").split("?")[0])
        if p.startswith(top + os.sep):
            out.append((event, os.path.relpath(p, top)))
    return out


def _assert_only_own(root: Path, name: str, log: dict) -> list[str]:
    """Assert every write of a worker hit its own files; return the claims it lost in a race."""
    lost = []
    for event, rel in _writes(root, log):
        parts = Path(rel).parts
        if event == "os.mkdir" and len(parts) == 1:
            continue  # a shared folder itself (state/, claims/, labels/), made by the first
        if parts[0] == "claims" and parts[-1].startswith("."):
            continue  # the private temporary a claim is linked from
        if event == "os.link" and _owner(root, rel) != name:
            # a lost race: link() refuses an existing name atomically and changes nothing
            lost.append(rel)
            continue
        assert _owner(root, rel) == name, (event, rel)
    return lost


def test_two_annotators_in_two_processes_never_share_a_file_or_an_image(tmp_path, photos):
    root = tmp_path / "proj"
    create_project(root, images=photos, taxonomy=TAX, annotators=["ana", "ben"]).close()
    before = _snapshot(root)
    logs = {a: tmp_path / f"{a}.json" for a in ("ana", "ben")}
    procs = {a: _start(root, a, logs[a], "drain") for a in ("ana", "ben")}
    got = {a: _finish(procs[a], logs[a]) for a in procs}
    done = {a: got[a]["result"]["done"] for a in got}
    # no image done twice, none left out
    assert not set(done["ana"]) & set(done["ben"])
    assert sorted(done["ana"] + done["ben"]) == sorted(p.name[:-4] for p in photos.iterdir())
    # each process wrote only its own files (state, labels, claims it made)
    for a, other in (("ana", "ben"), ("ben", "ana")):
        lost = _assert_only_own(root, a, got[a])
        assert len(lost) <= got[a]["result"]["refused"]
        for rel in lost:  # the claim it lost was made by the other process
            assert ("os.link", rel) in _writes(root, got[other])
        if done[a]:  # under load one process may drain the queue before the other starts
            assert any(rel == f"state/{a}.sqlite" for _, rel in _writes(root, got[a]))
    # the catalog was not touched; every new or changed file has one owner, the one that worked
    changed = _changed(before, _snapshot(root))
    assert "project.db" not in changed and "project.json" not in changed
    for rel in changed:
        owner = _owner(root, rel)
        assert owner in ("ana", "ben"), rel
        if rel.startswith("labels/") and rel.endswith(".png"):
            assert Path(rel).stem in done[owner]
    # status aggregated from both state files, read-only
    with open_project(root) as p:
        st = p.status()
        assert st["status"][DONE] == 12 and st["status"][TODO] == 0
        for a in ("ana", "ben"):
            assert st["annotators"][a]["production"] == ({DONE: len(done[a])} if done[a] else {})
            assert st["annotators"][a]["seconds"] == pytest.approx(len(done[a]))
        assert p.progress()["done"] == 12
        for a in ("ana", "ben"):
            for i, stem in enumerate(done[a]):
                labels = read_labels(p.labels_path(stem, annotator=a))
                assert (labels == 1).sum() == 20 * (10 + i)
    # a read-only session (the project manager's) changes no file at all
    before = _snapshot(root)
    look = _finish(_start(root, "lead", tmp_path / "lead.json", "look"), tmp_path / "lead.json")
    assert _changed(before, _snapshot(root)) == set()
    assert _writes(root, look) == []
    assert look["result"]["status"] == json.loads(json.dumps(st))
    assert look["result"]["next"] is None


def test_a_killed_session_keeps_its_claim_and_a_stale_one_can_be_taken_over(tmp_path, photos):
    root = tmp_path / "proj"
    create_project(root, images=photos, taxonomy=TAX, annotators=["ana", "ben"]).close()
    proc = _start(root, "ana", tmp_path / "ana.json", "hold")
    line = proc.stdout.readline().split()
    assert line[0] == "HELD", proc.stderr.read()
    stem = line[1]
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    with open_project(root) as p:
        assert p.status()["status"][IN_PROGRESS] == 1
        assert p.resume("ana") == ("production", stem)
        with pytest.raises(ProjectError, match="by ana"):
            p.open_item(stem, annotator="ben")
        assert p.next_stem(annotator="ben") != stem
        # ana comes back: her claim and her autosaved labels are intact
        item = p.open_item(stem, annotator="ana")
        assert item.source == "saved" and (item.labels == 1).sum() == 400
        # she never comes back: the claim is fresh, so it is refused, then taken over once stale
        with pytest.raises(ProjectError, match="goes stale"):
            p.take_over(stem, annotator="ben", stale_after=3600)
        p.take_over(stem, annotator="ben", stale_after=0)
        taken = p.open_item(stem, annotator="ben")
        assert taken.source == "new"
        p.save_item(taken, status=DONE)
        with pytest.raises(ProjectError, match="belongs to ben"):
            p.save_item(item)  # ana's stale window learns it lost the image
        st = p.status()
        assert st["status"][DONE] == 1 and st["status"][IN_PROGRESS] == 0
        assert st["annotators"]["ben"]["production"] == {DONE: 1}
        assert st["annotators"]["ana"]["production"] == {}
        assert p.images()[p._index[stem]].annotator == "ben"
        # ana's labels stay in her folder: nothing lost, nothing of hers overwritten
        assert (read_labels(p.labels_path(stem, annotator="ana")) == 1).sum() == 400
    claims = sorted((root / "claims").glob(f"{stem}@*.json"))
    assert [json.loads(c.read_text())["annotator"] for c in claims] == ["ana", "ben"]


def _legacy_project(root: Path, photos: Path) -> list[str]:
    """A project as the single-database layout wrote it (the old schema, filled by hand)."""
    from napari_segflow.core.taxonomy import save_taxonomy

    root.mkdir()
    save_taxonomy(TAX, root / "taxonomy.json")
    stems = sorted(p.name[:-4] for p in photos.iterdir())[:4]
    now = time.time()
    with ProjectStore(root / "project.db", create=True) as store, store.transaction() as con:
        for i, s in enumerate(stems, 1):
            con.execute(
                "INSERT INTO images (id, stem, path, gold) VALUES (?, ?, ?, 0)",
                (i, s, f"../images/{s}.jpg"),
            )
        con.execute("INSERT INTO annotators VALUES ('ana', ?, 'production', ?)", (stems[2], now))
        con.execute("INSERT INTO annotators VALUES ('ben', NULL, NULL, ?)", (now,))
        # image 1 done by ana, reviewed and rejected; 2 done by ben and accepted; 3 ana working
        for i, who, status in ((1, "ana", REJECTED), (2, "ben", DONE), (3, "ana", IN_PROGRESS)):
            image_status = {1: REJECTED, 2: "accepted", 3: IN_PROGRESS}[i]
            con.execute(
                "UPDATE images SET status=?, annotator=? WHERE id=?", (image_status, who, i)
            )
            con.execute(
                "INSERT INTO work (image_id, annotator, mode, status, seconds, class_pixels, "
                "started, updated) VALUES (?, ?, 'production', ?, 30, '{\"pet\": 10}', ?, ?)",
                (i, who, status, now, now + 1),
            )
        con.execute("INSERT INTO qa_batches VALUES (1, ?, 0, NULL)", (now,))
        con.execute(
            "INSERT INTO qa_items VALUES (1, 1, 'ana', '[]', 'rejected', 'rev', 5, ?)", (now,)
        )
        con.execute(
            "INSERT INTO qa_items VALUES (1, 2, 'ben', '[]', 'accepted', 'rev', 5, ?)", (now,)
        )
        con.execute("INSERT INTO calibration VALUES ('ana', 'pet', 0.5, 1, ?)", (now,))
    config = {"format": "segflow-project", "version": 1, "name": "old", "images": None,
              "gold": None, "prelabels": "prelabels"}  # fmt: skip
    (root / "project.json").write_text(json.dumps(config))
    return stems


def test_a_project_with_one_state_database_opens_and_migrates(tmp_path, photos):
    root = tmp_path / "proj"
    stems = _legacy_project(root, photos)
    want = {TODO: 1, IN_PROGRESS: 1, DONE: 0, "skipped": 0, "in_review": 0,
            "accepted": 1, REJECTED: 1}  # fmt: skip
    with open_project(root) as p:
        st = p.status()
        assert st["status"] == want
        assert st["annotators"]["ana"]["production"] == {IN_PROGRESS: 1, REJECTED: 1}
        assert st["annotators"]["ana"]["current"] == stems[2]
        assert st["annotators"]["ana"]["flags"] == ["pet"]
        assert st["annotators"]["ben"]["production"] == {DONE: 1}
        assert st["qa_batches"] == 1 and p.qa_batches()[0]["verdicts"] == {
            "rejected": 1,
            "accepted": 1,
        }
        assert p.accepted_by() == {stems[1]: "rev"}
        # claims carried over: ben may not take ana's images; ana's queue has her rejected one
        with pytest.raises(ProjectError, match="by ana"):
            p.open_item(stems[2], annotator="ben")
        assert p.next_stem(annotator="ana") == stems[0]
        assert p.next_stem(annotator="ben") == stems[3]
        # answering the rejection: ana finishes the image again
        item = p.open_item(stems[0], annotator="ana")
        p.save_item(item, status=DONE)
        assert p.status()["status"][DONE] == 1 and p.status()["status"][REJECTED] == 0
    cfg = json.loads((root / "project.json").read_text())
    assert cfg["state"] == "per-annotator"
    assert sorted(f.name for f in (root / "state").iterdir()) == [
        "ana.sqlite",
        "ben.sqlite",
        "rev.sqlite",
    ]
    # the old database is now the sealed catalog: no WAL files, opened read-only afterwards
    assert not (root / "project.db-wal").exists()
    assert sqlite3.connect(root / "project.db").execute("PRAGMA journal_mode").fetchone() == (
        "delete",
    )
    before = (root / "project.db").stat().st_mtime_ns
    with open_project(root) as p:
        assert p.status()["status"][DONE] == 1
    assert (root / "project.db").stat().st_mtime_ns == before


def test_several_windows_of_one_annotator_share_her_state_file(tmp_path, photos):
    root = tmp_path / "proj"
    create_project(root, images=photos, taxonomy=TAX, annotators=["ana"]).close()
    with open_project(root) as w1, open_project(root) as w2:
        a = w1.open_item(w1.next_stem(annotator="ana"), annotator="ana")
        b = w2.open_item(w2.next_stem(annotator="ana", after=a.stem), annotator="ana")
        assert a.stem != b.stem
        w1.save_item(a, seconds=3.0, status=DONE)
        w2.save_item(b, seconds=4.0, status=DONE)
        for w in (w1, w2):
            st = w.status()
            assert st["annotators"]["ana"]["production"] == {DONE: 2}
            assert st["annotators"]["ana"]["seconds"] == pytest.approx(7.0)
        labels = np.asarray(read_labels(w1.labels_path(b.stem, annotator="ana")))
        assert labels.shape == b.labels.shape


def test_a_session_killed_inside_a_transaction_loses_only_that_change(tmp_path, photos):
    root = tmp_path / "proj"
    with create_project(root, images=photos, taxonomy=TAX, annotators=["ana"]) as p:
        item = p.open_item(p.next_stem(annotator="ana"), annotator="ana")
        p.save_item(item, seconds=5.0, status=DONE)
    code = (
        "import sys, time\n"
        "from napari_segflow.core.project.state import AnnotatorState\n"
        "st = AnnotatorState(sys.argv[1], 'ana', writable=True)\n"
        "con = st._con\n"
        "con.execute('PRAGMA cache_size=10')\n"  # pages reach the file before the commit
        "con.execute('BEGIN IMMEDIATE')\n"
        "con.execute(\"UPDATE work SET status='skipped', seconds=seconds+100\")\n"
        "con.executemany('INSERT INTO work (image_id, mode, status, class_pixels) VALUES "
        "(?, ?, ?, ?)', [(i, 'production', 'done', 'x' * 200) for i in range(100, 20100)])\n"
        "print('IN', flush=True)\n"
        "time.sleep(600)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(root)], env=_env(), stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "IN"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    state = root / "state" / "ana.sqlite"
    assert Path(f"{state}-journal").exists()  # a hot journal: the file is mid-commit
    before = _snapshot(root)
    with open_project(root) as p:  # somebody else's window: reads, never repairs ana's file
        assert p.status()["images"] == 12
    assert _changed(before, _snapshot(root)) == set()
    # ana's next window rolls her file back to the last commit and goes on
    with open_project(root) as p:
        item = p.open_item(p.next_stem(annotator="ana"), annotator="ana")
        st = p.status()
        assert st["status"][DONE] == 1 and st["annotators"]["ana"]["seconds"] == 5.0
        assert not Path(f"{state}-journal").exists()
        p.save_item(item, seconds=1.0, status=DONE)
        assert p.status()["status"][DONE] == 2
