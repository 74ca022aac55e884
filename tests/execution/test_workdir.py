"""The work dir has one owner: `emo_cli.execution.workdir` names every file under `.emo/jobs/<id>/`."""

from __future__ import annotations

import re
from pathlib import Path

from emo_cli.execution.workdir import Journal, WorkDir

PACKAGE = Path(__file__).resolve().parents[2] / "emo_cli"
# How the work dir's files are spelled; any of these in a module is a second owner.
SPELLINGS = re.compile(r"""journal\.json|["']chunks/|/ ["']chunks["']|segments\.ffconcat|audio\.m4a|unsigned\.mp4|lease\.\{|\.state\.npz""")


def test_no_other_module_spells_the_work_dir_names():
    owners = sorted(
        str(path.relative_to(PACKAGE.parent))
        for path in PACKAGE.rglob("*.py")
        if SPELLINGS.search(path.read_text())
    )
    assert owners == ["emo_cli/execution/workdir.py"]


def test_stale_temporaries_go_and_committed_files_stay(tmp_path):
    work = WorkDir(tmp_path)
    journal = Journal(job_id="j", num_frames=10, chunk_frames=10)
    work.segment(0).parent.mkdir(parents=True)
    work.segment(0).write_bytes(b"segment")
    work.commit_chunk(journal, 0, 0, 10, work.write_state(0, {"k": 1}))
    stale = [tmp_path / "chunks" / ".00001.mp4.abc.tmp.mp4", tmp_path / ".journal.json.x1.tmp.json",
             tmp_path / ".audio.m4a.x2.tmp.m4a", tmp_path / ".unsigned.mp4.x3.tmp.mp4"]  # fmt: skip
    for path in stale:
        path.write_bytes(b"half")
    lease_claim = tmp_path / ".lease.0123.tmp"  # another process's claim in progress: not ours to delete
    lease_claim.write_bytes(b"{}")
    work.remove_stale_temporaries()
    assert not any(path.exists() for path in stale) and lease_claim.exists()
    assert work.good_chunks(work.load_journal(), [(0, 10)]) == [True]
    work.segment(0).write_bytes(b"altered")
    reloaded = work.load_journal()
    assert work.good_chunks(reloaded, [(0, 10)]) == [False] and reloaded.chunks == {}
