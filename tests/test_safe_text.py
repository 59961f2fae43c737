"""What leaves kale-trace: no credential in any output or file, no live terminal controls."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from click.testing import CliRunner
from conftest import write_notebook

from kale_trace import safe_text
from kale_trace.cli import main
from kale_trace.safe_text import (
    add_cookies,
    add_environment,
    add_secret,
    add_url,
    for_terminal,
    printable,
    public_url,
    redact,
)

TITLE = "\x1b]0;pwned\x07"  # sets the terminal's title
# `;` separates step names (Kale's block:a;b), so a step name gets a colour code instead.
RED = "\x1b[31mred\x07"
CLEAR = "\x1b[2J\x1b[H"  # clears the screen


@pytest.fixture(autouse=True)
def no_known_secrets():
    safe_text.forget_secrets()
    yield
    safe_text.forget_secrets()


def test_given_credentials_are_masked_in_every_spelling():
    add_secret("tok-3f9a8b7c")
    add_cookies("authservice_session=sess-abc123; other=val-xyz9")
    add_url("http://admin:p%40ss-word@kfp.example:8080/pipeline?token=qs-secret-42&x=1")
    text = (
        "Bearer tok-3f9a8b7c; cookie sess-abc123 and val-xyz9; password p@ss-word or "
        "p%40ss-word; query qs-secret-42"
    )
    shown = redact(text)
    for secret in ("tok-3f9a8b7c", "sess-abc123", "val-xyz9", "p@ss-word", "p%40ss", "qs-secret"):
        assert secret not in shown
    assert shown.count("***") >= 6


def test_header_and_url_shaped_credentials_are_masked_even_if_unknown():
    echoed = (
        'Authorization: Bearer unknown-token-1234\n{"Cookie": "authservice_session=zz99"}\n'
        "see https://bob:hunter2@host/x and https://host/cb?code=oauth-code-77&state=1"
    )
    shown = redact(echoed)
    for secret in ("unknown-token-1234", "zz99", "hunter2", "oauth-code-77"):
        assert secret not in shown
    assert "https://bob:***@host/x" in shown and "state=1" in shown


def test_the_environment_and_the_service_account_token_file_are_secrets(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("sa-token-from-file\n")
    add_environment(
        {
            "KF_PIPELINES_TOKEN": "env-token-5678",
            "KF_PIPELINES_COOKIES": "authservice_session=env-cookie-1",
            "KF_PIPELINES_SA_TOKEN_PATH": str(token_file),
        }
    )
    shown = redact("env-token-5678 env-cookie-1 sa-token-from-file")
    assert shown == "*** *** ***"


def test_a_public_url_keeps_the_host_and_hides_the_rest():
    assert public_url("http://user:pw@h:1/a?t=1&u") == "http://user:***@h:1/a?t=***&u"
    assert public_url("https://TOKEN123@h/") == "https://***@h/"
    assert public_url("http://h:8080") == "http://h:8080"


def test_control_characters_are_shown_as_escapes():
    text = f"step {TITLE}x{CLEAR} tab\tnew\nline\rback \u202eevil\u202c \x9b"
    shown = printable(text)
    assert "\x1b" not in shown and "\x07" not in shown and "\r" not in shown
    assert "\u202e" not in shown and "\x9b" not in shown
    assert "\\x1b]0;pwned\\x07" in shown and "\\u202e" in shown and "\\r" in shown
    assert "tab\tnew\nline" in shown  # layout characters stay
    assert printable("Windows\r\nline") == "Windows\nline"


def test_notebook_controlled_text_reaches_the_terminal_neutralised(tmp_path):
    evil = write_notebook(
        tmp_path / f"nb{CLEAR}.ipynb",
        [
            (f"step:load{RED}", "x = 1"),
            ([f"step:use{CLEAR}", f"prev:load{RED}"], f"raise ValueError({TITLE + CLEAR!r})"),
        ],
    )
    result = CliRunner().invoke(main, ["compile", str(evil), "-o", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert "\x1b" not in result.output and "\x07" not in result.output
    assert "\\x1b]0;pwned\\x07" in result.output  # the exception, visible
    assert "\\x1b[2J" in result.output  # the file name and the step name
    static = CliRunner().invoke(
        main, ["compile", str(evil), "-o", str(tmp_path / "out"), "--no-trace"]
    )
    assert static.exit_code == 0, static.output
    assert "\x1b" not in static.output and "step load\\x1b[31mred\\x07: inputs" in static.output


def test_credentials_in_the_environment_never_reach_output_or_run_log(tmp_path):
    """A local run whose step prints the token; the token is in no output and no file."""
    nb = write_notebook(
        tmp_path / "nb.ipynb",
        [
            ("step:a__b", "import os\nprint('token is', os.environ['KF_PIPELINES_TOKEN'])\nx = 1"),
            (["step:a_b", "prev:a__b"], "import os, sys\n"
             "if 'ipykernel' not in sys.modules:  # the local run, not the dry run\n"
             "    raise RuntimeError(os.environ['KF_PIPELINES_TOKEN'])"),
        ],
    )  # fmt: skip
    secret = "env-secret-token-0451"
    env = {**os.environ, "KF_PIPELINES_TOKEN": secret}
    result = subprocess.run(
        [sys.executable, "-m", "kale_trace", "run", str(nb), "-o", str(tmp_path / "out")],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    # KFP names the tasks a-b and a-b-2; progress and the error use the notebook's names
    assert "[1/2] a__b: success" in result.stderr and "[2/2] a_b ..." in result.stderr
    assert "step 'a_b': the pipeline failed in this step" in result.stderr
    assert "RuntimeError: ***" in result.stderr
    written = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    (log,) = [p for p in written if p.name == "run.log"]
    assert "token is ***" in log.read_text()
    assert secret not in result.stdout + result.stderr
    assert not [p for p in written if secret.encode() in p.read_bytes()]


def test_for_terminal_redacts_then_neutralises():
    add_secret("s3cr3t-value")
    assert for_terminal(f"{TITLE}s3cr3t-value") == "\\x1b]0;pwned\\x07***"
