"""Output folders: kale-trace replaces only what it wrote, and says why it cannot write.

Each case goes through the command line (CliRunner, --no-trace: no kernel needed) and
checks both the message and that nothing of the user's changed and nothing was left behind.
"""

from __future__ import annotations

import errno
import json
import os
import signal
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from conftest import write_notebook

from kale_trace import outputs
from kale_trace.cli import main
from kale_trace.compiler import CompileOptions, compile_notebook
from kale_trace.errors import KaleTraceError
from kale_trace.outputs import MARKER, atomic_folder

CELLS = [("parameters", "n = 1"), ("step:a", "x = n"), (["step:b", "prev:a"], "y = x")]


def compile_cli(notebook: Path, outdir: Path | str) -> Result:
    return CliRunner().invoke(main, ["compile", str(notebook), "-o", str(outdir), "--no-trace"])


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (hidden ones too) and its content."""
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob(".kale-trace-*") if p.name != MARKER]


@pytest.fixture
def nb(tmp_path: Path) -> Path:
    (tmp_path / "project").mkdir()
    return write_notebook(tmp_path / "project" / "nb.ipynb", CELLS)


def test_the_notebooks_own_folder_is_refused_before_the_dry_run(nb):
    before = snapshot(nb.parent)
    result = CliRunner().invoke(main, ["compile", str(nb), "-o", str(nb.parent)])
    assert result.exit_code == 1
    assert (
        f"the output folder {nb.parent} already holds files that kale-trace did not write"
        in result.output
    )
    assert "('nb.ipynb')" in result.output and "would delete it" in result.output
    assert "fix: pass -o a new or empty folder" in result.output
    assert "dry run" not in result.output  # refused before minutes of work, not after
    assert snapshot(nb.parent) == before and not leftovers(nb.parent)


def test_dot_in_the_notebooks_folder_is_refused(nb, monkeypatch):
    monkeypatch.chdir(nb.parent)
    result = compile_cli(Path("nb.ipynb"), ".")
    assert result.exit_code == 1 and "the output folder . already holds" in result.output
    assert sorted(os.listdir(nb.parent)) == ["nb.ipynb"]


def test_root_and_home_are_refused_and_nothing_is_created_in_them(nb, tmp_path, monkeypatch):
    root = set(os.listdir("/"))
    result = compile_cli(nb, "/")
    assert result.exit_code == 1 and "the output folder / already holds" in result.output
    assert set(os.listdir("/")) == root  # no staging or old folder in /
    home = tmp_path / "home"
    home.mkdir()
    (home / ".bashrc").write_text("export X=1\n")
    monkeypatch.setenv("HOME", str(home))
    result = compile_cli(nb, Path("~").expanduser())
    assert result.exit_code == 1 and "'.bashrc'" in result.output
    assert sorted(os.listdir(home)) == [".bashrc"]


def test_the_notebook_itself_or_a_path_under_a_file_is_refused(nb):
    before = nb.read_bytes()
    assert compile_cli(nb, nb).exit_code == 2  # click: "-o ... is a file"
    with pytest.raises(KaleTraceError, match="is a file, not a folder"):
        compile_notebook(nb, nb, CompileOptions(overrides={}, samples={}, trace=False))
    result = compile_cli(nb, nb / "out")
    assert result.exit_code == 1
    assert f"cannot create the output folder {nb / 'out'}: {nb} is a file" in result.output
    assert nb.read_bytes() == before and sorted(os.listdir(nb.parent)) == ["nb.ipynb"]


def test_symlinks_are_followed_only_to_what_may_be_replaced(nb, tmp_path):
    link = tmp_path / "link"
    link.symlink_to(nb.parent)
    assert compile_cli(nb, link).exit_code == 1
    assert sorted(os.listdir(nb.parent)) == ["nb.ipynb"]
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "nowhere")
    result = compile_cli(nb, dangling)
    assert result.exit_code == 1 and "is a symbolic link to" in result.output
    assert not (tmp_path / "nowhere").exists()
    out = tmp_path / "real-out"
    (tmp_path / "out-link").symlink_to(out, target_is_directory=True)
    out.mkdir()
    assert compile_cli(nb, tmp_path / "out-link").exit_code == 0
    assert (out / "nb.yaml").is_file() and (tmp_path / "out-link").is_symlink()


def test_an_empty_folder_is_used_in_place(nb, tmp_path):
    out = tmp_path / "empty"
    out.mkdir()
    inode = out.stat().st_ino
    result = compile_cli(nb, out)
    assert result.exit_code == 0, result.output
    assert out.stat().st_ino == inode  # the same folder (a mount point, a cwd stay valid)
    marker = json.loads((out / MARKER).read_text())
    assert marker["written_by"] == "kale-trace"
    assert marker["files"] == sorted(p.name for p in out.iterdir() if p.name != MARKER)


def test_a_kale_trace_folder_is_replaced_keeping_runs(nb, tmp_path):
    out = tmp_path / "out"
    assert compile_cli(nb, out).exit_code == 0
    (out / "runs" / "old-run").mkdir(parents=True)
    (out / "runs" / "old-run" / "run.log").write_text("kept")
    stale = out / ".kale-trace-staging-999999999-x"  # a killed compile's (no such pid)
    stale.mkdir()
    renamed = write_notebook(nb.parent / "other.ipynb", CELLS)
    assert compile_cli(renamed, out).exit_code == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(
        [MARKER, "dataflow.json", "other.py", "other.yaml", "report.html", "report.md", "runs"]
    )  # nb.py and nb.yaml of the earlier pipeline are gone, the stale staging too
    assert (out / "runs" / "old-run" / "run.log").read_text() == "kept"


def test_a_users_file_in_a_kale_trace_folder_stops_the_replacement(nb, tmp_path):
    out = tmp_path / "out"
    assert compile_cli(nb, out).exit_code == 0
    (out / "notes.txt").write_text("mine")
    before = snapshot(out)
    result = compile_cli(nb, out)
    assert result.exit_code == 1
    assert "was written by kale-trace but now also holds 'notes.txt'" in result.output
    assert "fix: move 'notes.txt' out of" in result.output
    assert snapshot(out) == before and not leftovers(out)


def test_a_notebook_inside_its_own_output_folder_is_never_deleted(nb, tmp_path):
    out = tmp_path / "out"
    assert compile_cli(nb, out).exit_code == 0
    inside = write_notebook(out / "copy.ipynb", CELLS)
    result = compile_cli(inside, out)
    assert result.exit_code == 1 and "'copy.ipynb'" in result.output
    assert inside.is_file()


def test_a_failed_block_or_ctrl_c_leaves_nothing_behind(tmp_path):
    target = tmp_path / "deep" / "out"
    with pytest.raises(KeyboardInterrupt), atomic_folder(target) as staging:
        (staging / "half.txt").write_text("x")
        raise KeyboardInterrupt
    assert os.listdir(tmp_path) == []  # the folders it created are gone too
    existing = tmp_path / "existing"
    existing.mkdir()
    with pytest.raises(RuntimeError), atomic_folder(existing):
        raise RuntimeError("boom")
    assert os.listdir(existing) == []


def test_ctrl_c_while_moving_into_place_waits_for_the_move(tmp_path, monkeypatch):
    move = outputs._move_into_place

    def interrupted_move(staging: Path, path: Path) -> None:
        signal.raise_signal(signal.SIGINT)  # Ctrl-C in the middle of the swap
        move(staging, path)

    monkeypatch.setattr(outputs, "_move_into_place", interrupted_move)
    target = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt), atomic_folder(target) as staging:
        (staging / "a.txt").write_text("complete")
    assert (target / "a.txt").read_text() == "complete"  # delivered after the move
    assert sorted(os.listdir(target)) == [MARKER, "a.txt"]


def test_a_failed_move_puts_the_previous_output_back(nb, tmp_path, monkeypatch):
    out = tmp_path / "out"
    assert compile_cli(nb, out).exit_code == 0
    before = snapshot(out)
    replace = os.replace
    calls = []

    def failing(src, dst):
        calls.append(src)
        if len(calls) == 4:  # after some old files went out: the OS refuses
            raise PermissionError(errno.EACCES, "Permission denied", str(dst))
        return replace(src, dst)

    monkeypatch.setattr(outputs.os, "replace", failing)
    result = compile_cli(nb, out)
    assert result.exit_code == 1
    assert f"cannot write {out}: Permission denied" in result.output
    assert f"fix: make {out} writable for this user" in result.output
    assert snapshot(out) == before and not leftovers(out)


def test_a_full_disk_names_the_file_and_what_to_free(nb, tmp_path, monkeypatch):
    import kfp.compiler

    def no_space(self, pipeline_func, package_path, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", package_path)

    monkeypatch.setattr(kfp.compiler.Compiler, "compile", no_space)
    out = tmp_path / "out"
    result = compile_cli(nb, out)
    assert result.exit_code == 1
    assert f"cannot write {out / 'nb.yaml'}: No space left on device" in result.output
    assert "fix: free space on the disk that holds" in result.output
    assert "bug" not in result.output and "internal error" not in result.output
    assert not out.exists() and not leftovers(tmp_path)


def test_a_full_disk_while_writing_a_staged_file_names_its_final_path(nb, tmp_path, monkeypatch):
    write_text = Path.write_text

    def full(self, data, *args, **kwargs):
        if self.name == "dataflow.json":
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return write_text(self, data, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full)
    out = tmp_path / "out"
    result = compile_cli(nb, out)
    assert result.exit_code == 1
    assert f"cannot write {out / 'dataflow.json'}: No space left on device" in result.output
    assert ".kale-trace-staging" not in result.output
    assert not out.exists()


def test_runs_being_a_file_is_a_clear_error(nb, tmp_path):
    out = tmp_path / "out"
    assert compile_cli(nb, out).exit_code == 0
    (out / "runs").write_text("not a folder")
    result = CliRunner().invoke(main, ["run", str(nb), "-o", str(out), "--no-trace"])
    assert result.exit_code == 1
    assert f"{out / 'runs'} is a file, so the local run has nowhere to keep" in result.output
    assert f"fix: move {out / 'runs'} away" in result.output
    assert "internal error" not in result.output


def test_a_report_that_cannot_be_written_says_why(nb, tmp_path):
    result = CliRunner().invoke(main, ["report", str(nb), "--no-trace", "-o", str(nb / "r.md")])
    assert result.exit_code == 1
    assert f"cannot write {nb}: File exists" in result.output
    assert f"fix: a file or folder is in the way at {nb}" in result.output
    assert "internal error" not in result.output
