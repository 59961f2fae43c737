"""Ctrl-C and SIGTERM, sent to a real `kale-trace` process as a terminal or a supervisor would.

After either signal: the right exit code (130 or 143), a message that says truthfully what
had been written, no Python traceback, and no process left running (the dry run's kernel,
kfp's executors, the shells and programs a step started).
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import write_notebook

CLI = [sys.executable, "-m", "kale_trace"]
SLEEPY_STEP = (
    "import os, subprocess, sys\n"
    "if 'ipykernel' not in sys.modules:  # the local run, not the dry run\n"
    "    shell = subprocess.Popen(['sh', '-c', 'sleep 300 & sleep 300; wait'])\n"
    "    with open('started.tmp', 'w') as f:\n"
    "        f.write(str(os.getpgid(0)))\n"
    "    os.replace('started.tmp', 'started')\n"
    "    shell.wait()\n"
    "y = x"
)


def start(*args: str, cwd: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([*CLI, *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def read_until(child: subprocess.Popen[bytes], text: str, timeout: float = 240) -> str:
    """Read the child's stderr until `text` appears (or it exits); return what was read."""
    assert child.stderr is not None
    seen = b""
    deadline = time.monotonic() + timeout
    while text.encode() not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([child.stderr], [], [], 1.0)
        if ready:
            chunk = os.read(child.stderr.fileno(), 65536)
            if not chunk:
                break
            seen += chunk
    assert text.encode() in seen, seen.decode(errors="replace")
    return seen.decode(errors="replace")


def finish(child: subprocess.Popen[bytes], before: str) -> str:
    _, rest = child.communicate(timeout=120)
    return before + rest.decode(errors="replace")


def live(pid: int) -> bool:
    """Whether the process exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def group_members(pgid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and live(int(entry.name)):
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[2]) == pgid:
                found.append(int(entry.name))
    return found


def group_exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def kernels_of(pid: int) -> list[int]:
    """The ipykernel processes `pid` started."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command = (entry / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if parent == pid and b"ipykernel" in command:
            found.append(int(entry.name))
    return found


def wait_for(condition, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.1)


@pytest.mark.parametrize(
    ("signum", "code", "said"),
    [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated (SIGTERM)")],
    ids=["ctrl-c", "sigterm"],
)
def test_a_signal_during_the_dry_run_stops_the_kernel(tmp_path, signum, code, said):
    nb = write_notebook(
        tmp_path / "nb.ipynb",
        [("step:a", "x = 1"), (["step:b", "prev:a"], "import time\ntime.sleep(300)")],
    )
    child = start("compile", str(nb), "-o", str(tmp_path / "out"), cwd=tmp_path)
    before = read_until(child, "dry run: b")
    kernels = kernels_of(child.pid)
    assert kernels, "the dry run's kernel was not found"
    child.send_signal(signum)
    stderr = finish(child, before)
    assert child.returncode == code, stderr
    assert f"kale-trace: {said}; no output was written." in stderr
    assert "Traceback" not in stderr and "never retrieved" not in stderr
    assert not (tmp_path / "out").exists()
    wait_for(lambda: not any(live(k) for k in kernels), timeout=30)


@pytest.mark.parametrize(
    ("signum", "code", "said", "event"),
    [
        (signal.SIGINT, 130, "interrupted", "Ctrl-C"),
        (signal.SIGTERM, 143, "terminated (SIGTERM)", "signal"),
    ],
    ids=["ctrl-c", "sigterm"],
)
def test_a_signal_during_a_local_run_stops_every_process_it_started(
    tmp_path, signum, code, said, event
):
    nb = write_notebook(
        tmp_path / "nb.ipynb", [("step:a", "x = 1"), (["step:b", "prev:a"], SLEEPY_STEP)]
    )
    out = tmp_path / "out"
    child = start("run", str(nb), "-o", str(out), "--no-trace", cwd=tmp_path)
    before = read_until(child, "[2/2] b ...")
    marker = tmp_path / "started"
    wait_for(marker.exists)
    pgid = int(marker.read_text())
    assert pgid != os.getpgid(child.pid)  # the run has its own process group
    assert len(group_members(pgid)) >= 4  # runner, executor, shell, sleeps
    child.send_signal(signum)
    stderr = finish(child, before)
    assert child.returncode == code, stderr
    (run_dir,) = (out / "runs").iterdir()
    assert (
        f"kale-trace: {said}; written before the {event}: the compiled pipeline in {out}; "
        f"the local run's partial results in {run_dir}." in stderr
    )
    assert "no output was written" not in stderr and "Traceback" not in stderr
    assert group_members(pgid) == []  # nothing of the run is left running
    wait_for(lambda: not group_exists(pgid), timeout=30)  # and init reaps the last zombies
    assert (run_dir / "run.log").is_file() and (out / "nb.yaml").is_file()


def test_the_asyncio_noise_of_an_interrupted_dry_run_is_not_printed():
    """nbclient's kernel-polling task dies with DeadKernelError after Ctrl-C; asyncio would
    log "Task exception was never retrieved" with its traceback at exit."""
    program = (
        "import asyncio, gc, sys\n"
        "from nbclient.exceptions import DeadKernelError\n"
        "if sys.argv[1] == 'cli':\n"
        "    from kale_trace.cli import _quiet_logging\n"
        "    _quiet_logging()\n"
        "async def poll():\n"
        "    raise DeadKernelError('Kernel died')\n"
        "loop = asyncio.new_event_loop()\n"
        "task = loop.create_task(poll())\n"
        "loop.run_until_complete(asyncio.sleep(0.01))\n"
        "del task\n"
        "gc.collect()\n"
        "print('done')\n"
    )
    bare = subprocess.run([sys.executable, "-c", program, "bare"], capture_output=True, text=True)
    assert "Task exception was never retrieved" in bare.stderr  # the noise is real
    quiet = subprocess.run([sys.executable, "-c", program, "cli"], capture_output=True, text=True)
    assert quiet.stdout == "done\n" and quiet.stderr == ""
