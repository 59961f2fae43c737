"""`kale-trace run --kfp-host`: upload, experiment, run and follow it, against a strict fake
KFP API server on loopback (tests/kfp_api_server.py) that checks every request."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from conftest import write_notebook
from kfp_api_server import (
    KfpApiServer,
    Rejected,
    RunScript,
    check_model,
    echo_headers,
    json_answer,
    login_page,
    redirect_to,
)
from kfp_server_api import models

from kale_trace.cli import main

PIPELINE = "cluster-demo"
EXPERIMENT = "nightly"
API = "/apis/v2beta1"


@pytest.fixture(scope="module")
def nb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cluster")
    return write_notebook(
        folder / "demo.ipynb",
        [
            ("parameters", "rows = 3"),
            ("step:load", "x = list(range(rows))"),
            (["step:train", "prev:load"], "total = sum(x)"),
        ],
        {"pipeline_name": PIPELINE, "experiment_name": EXPERIMENT},
    )


@pytest.fixture(autouse=True)
def isolated_kfp(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No developer kfp context file or KFP environment variables leak into a test."""
    import kfp.client.client

    monkeypatch.setattr(kfp.client.client.Client, "_LOCAL_KFP_CONTEXT", str(tmp_path / "no.json"))
    for name in (
        "KF_PIPELINES_TOKEN", "KF_PIPELINES_COOKIES", "KF_PIPELINES_SA_TOKEN_PATH",
        "KF_PIPELINES_UI_ENDPOINT", "KF_PIPELINES_DEFAULT_EXPERIMENT_NAME",
    ):  # fmt: skip
        monkeypatch.delenv(name, raising=False)


def run_cli(nb: Path, outdir: Path, server_url: str, *extra: str, trace: bool = False) -> Result:
    args = ["run", str(nb), "-o", str(outdir), "--kfp-host", server_url, "--poll-interval", "0"]
    return CliRunner().invoke(main, [*args, *([] if trace else ["--no-trace"]), *extra])


def steps_script(final: str) -> RunScript:
    """PENDING, load running, load done and train running, then `final`."""
    last = {"load": "SUCCEEDED", "train": final}
    return RunScript(
        [
            ("PENDING", {}),
            ("RUNNING", {"load": "RUNNING", "root": "RUNNING"}),
            ("RUNNING", {"load": "SUCCEEDED", "train": "RUNNING"}),
            (final, last),
        ],
        error="task train failed: exit code 1" if final == "FAILED" else None,
    )


def created_run(server: KfpApiServer) -> dict:
    (post,) = server.routes("POST", f"{API}/runs")
    return post.body


def test_a_succeeding_run_uploads_the_compiled_yaml_and_follows_it(nb, tmp_path):
    with KfpApiServer(steps_script("SUCCEEDED")) as server:
        result = run_cli(nb, tmp_path / "out", server.url, "--wait", trace=True)
    assert result.exit_code == 0, result.output
    (upload,) = server.routes("POST", f"{API}/pipelines/upload")
    assert upload.query == {"name": PIPELINE}
    filename, package = upload.files["uploadfile"]
    assert filename == f"{PIPELINE}.yaml"
    assert package == (tmp_path / "out" / f"{PIPELINE}.yaml").read_bytes()
    assert not server.routes("POST", f"{API}/pipelines/upload_version")
    (pipeline_id,) = server.pipelines
    (version_id,) = server.versions  # the server's first version, found by listing
    (experiment,) = server.routes("POST", f"{API}/experiments")
    assert experiment.body["display_name"] == EXPERIMENT
    (experiment_id,) = server.experiments
    run = created_run(server)
    assert run["experiment_id"] == experiment_id
    assert run["pipeline_version_reference"] == {
        "pipeline_id": pipeline_id,
        "pipeline_version_id": version_id,
    }
    assert run["display_name"].startswith(f"{PIPELINE} ")
    assert "pipeline_spec" not in run  # the run points at the uploaded version
    (run_id,) = server.runs
    assert len(server.routes("GET", f"{API}/runs/{run_id}")) == 4  # polled until SUCCEEDED
    url = f"{server.url}/#/runs/details/{run_id}"
    assert f"run:       {run_id}" in result.stdout and f"url:       {url}" in result.stdout
    assert "state:     SUCCEEDED" in result.stdout
    progress = result.stderr
    assert progress.index(f"{run_id}: pending") < progress.index("step load: running")
    assert progress.index("step train: succeeded") < progress.index(f"{run_id}: succeeded")
    assert "root" not in progress  # only the notebook's steps are reported
    assert "Experiment details" not in result.output  # kfp's own prints are silenced
    assert "Warning" not in result.output


def test_a_failed_run_exits_1_naming_the_run_its_url_and_the_step(nb, tmp_path):
    with KfpApiServer(steps_script("FAILED")) as server:
        result = run_cli(nb, tmp_path / "out", server.url, "--wait")
    assert result.exit_code == 1
    (run_id,) = server.runs
    assert f"run {run_id} ended failed: {server.url}/#/runs/details/{run_id}" in result.stderr
    assert "failed steps: train" in result.stderr
    assert "task train failed: exit code 1" in result.stderr  # the server's error message
    assert "Traceback" not in result.output


def test_a_cancelled_run_ends_the_wait(nb, tmp_path):
    script = RunScript([("RUNNING", {}), ("CANCELING", {}), ("CANCELED", {})])
    with KfpApiServer(script) as server:
        result = run_cli(nb, tmp_path / "out", server.url, "--wait", "--run-name", "try 1")
    assert result.exit_code == 1
    (run_id,) = server.runs
    assert len(server.routes("GET", f"{API}/runs/{run_id}")) == 3  # CANCELING is not the end
    assert f"run {run_id} ended canceled" in result.stderr
    assert created_run(server)["display_name"] == "try 1"


def test_an_existing_pipeline_gets_a_new_version_in_an_existing_experiment(nb, tmp_path):
    with KfpApiServer() as server:
        pipeline_id = server.add_pipeline(PIPELINE)
        other_id = server.add_experiment(EXPERIMENT)
        experiment_id = server.add_experiment("ad-hoc")
        result = run_cli(nb, tmp_path / "out", server.url, "--experiment", "ad-hoc")
    assert result.exit_code == 0, result.output
    assert not server.routes("POST", f"{API}/pipelines/upload")
    assert not server.routes("POST", f"{API}/experiments")  # found, not created
    (upload,) = server.routes("POST", f"{API}/pipelines/upload_version")
    assert upload.query["pipelineid"] == pipeline_id
    assert upload.query["name"].startswith(f"{PIPELINE} ")
    assert upload.files["uploadfile"][1] == (tmp_path / "out" / f"{PIPELINE}.yaml").read_bytes()
    new_version = next(
        v for v in server.versions.values() if v["display_name"] == upload.query["name"]
    )
    run = created_run(server)
    assert run["pipeline_version_reference"] == {
        "pipeline_id": pipeline_id,
        "pipeline_version_id": new_version["pipeline_version_id"],
    }
    assert run["experiment_id"] == experiment_id != other_id  # the flag beats the metadata
    assert not server.routes("GET", f"{API}/runs/", prefix=True)  # no --wait: start it and return
    assert "state:" not in result.stdout


def test_without_metadata_the_names_are_the_file_name_and_kfps_default(tmp_path):
    plain = write_notebook(tmp_path / "plain.ipynb", [("step:only", "y = 1")])
    with KfpApiServer() as server:
        result = run_cli(plain, tmp_path / "out", server.url)
    assert result.exit_code == 0, result.output
    (upload,) = server.routes("POST", f"{API}/pipelines/upload")
    assert upload.query["name"] == "plain"
    (experiment,) = server.routes("POST", f"{API}/experiments")
    assert experiment.body["display_name"] == "Default"


def test_credentials_are_sent_and_never_printed(nb, tmp_path, monkeypatch):
    secret = "s3cret-token-value"
    with KfpApiServer(token=secret) as server:
        refused = run_cli(nb, tmp_path / "out", server.url)
        monkeypatch.setenv("KF_PIPELINES_TOKEN", secret)
        accepted = run_cli(nb, tmp_path / "out", server.url, "--wait", "--kfp-namespace", "team")
        again = run_cli(nb, tmp_path / "out", server.url, "--kfp-namespace", "team")
    assert refused.exit_code == 1
    assert "HTTP 401" in refused.stderr and "--kfp-token" in refused.stderr
    assert accepted.exit_code == 0, accepted.output
    assert again.exit_code == 0, again.output
    assert secret not in refused.output + accepted.output + again.output
    authorised = [r for r in server.requests if r.headers.get("authorization")]
    assert authorised and all(r.headers["authorization"] == f"Bearer {secret}" for r in authorised)
    (experiment,) = server.routes("POST", f"{API}/experiments")
    assert experiment.body["namespace"] == "team"
    (upload,) = server.routes("POST", f"{API}/pipelines/upload")
    assert upload.query["namespace"] == "team"
    # the namespaced pipeline is found again: the second run uploads a version of it
    (version,) = server.routes("POST", f"{API}/pipelines/upload_version")
    assert version.query["pipelineid"] == next(iter(server.pipelines))
    listed = server.routes("GET", f"{API}/pipelines")
    assert [r.query.get("namespace") for r in listed] == ["team", "team"]


def test_cookies_are_sent_and_never_printed(nb, tmp_path, monkeypatch):
    monkeypatch.setenv("KF_PIPELINES_COOKIES", "authservice_session=abc123")
    with KfpApiServer() as server:
        result = run_cli(nb, tmp_path / "out", server.url)
    assert result.exit_code == 0, result.output
    assert all(r.headers.get("cookie") == "authservice_session=abc123" for r in server.requests)
    assert "abc123" not in result.output


def test_a_multi_user_server_needs_a_namespace(nb, tmp_path):
    with KfpApiServer(multi_user=True) as server:
        result = run_cli(nb, tmp_path / "out", server.url)
    assert result.exit_code == 1 and "--kfp-namespace" in result.stderr
    assert [r.path for r in server.requests] == [f"{API}/healthz"]  # asked once, no retries


def test_a_service_account_token_file_is_used(nb, tmp_path, monkeypatch):
    token = tmp_path / "token"
    token.write_text("from-a-file")
    monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(token))
    with KfpApiServer(token="from-a-file") as server:
        result = run_cli(nb, tmp_path / "out", server.url)
    assert result.exit_code == 0, result.output
    assert "from-a-file" not in result.output


def test_a_server_error_is_a_clear_message(nb, tmp_path):
    with KfpApiServer() as server:
        server.fail["POST /apis/v2beta1/runs"] = 503
        result = run_cli(nb, tmp_path / "out", server.url, "--wait")
    assert result.exit_code == 1
    assert f"the KFP server at {server.url} answered HTTP 503" in result.stderr
    assert "creating run" in result.stderr and "injected failure" in result.stderr
    assert "Traceback" not in result.output
    with KfpApiServer() as server:
        server.fail["GET /apis/v2beta1/healthz"] = 500
        result = run_cli(nb, tmp_path / "out", server.url)
    assert result.exit_code == 1 and "HTTP 500" in result.stderr and "connecting" in result.stderr
    assert len(server.requests) == 1  # kfp itself would retry 5 times, 5 s apart


def test_an_unreachable_server_exits_1_with_a_message(nb, tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens on it once the socket is closed
    result = run_cli(nb, tmp_path / "out", f"http://127.0.0.1:{port}", "--wait")
    assert result.exit_code == 1
    assert f"cannot reach the KFP server at http://127.0.0.1:{port}" in result.stderr
    assert "refused" in result.stderr and "Traceback" not in result.output
    assert "0x" not in result.stderr  # no object reprs from urllib3


def test_a_server_that_never_answers_times_out(nb, tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()  # connections queue up, nobody reads or answers them
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        result = run_cli(nb, tmp_path / "out", url, "--kfp-timeout", "0.3")
    assert result.exit_code == 1
    assert (
        f"the KFP server at {url} did not answer within the 0.3 s limit (connecting)"
        in result.stderr
    )
    assert "--kfp-timeout" in result.stderr and "Traceback" not in result.output
    with KfpApiServer() as server:  # while following a run, each status check has the limit
        server.stall["GET /apis/v2beta1/runs/"] = 5.0
        result = run_cli(nb, tmp_path / "out", server.url, "--wait", "--kfp-timeout", "0.5")
    assert result.exit_code == 1
    (run_id,) = server.runs
    assert f"did not answer within the 0.5 s limit (polling run {run_id}" in result.stderr
    assert len(server.routes("GET", f"{API}/runs/{run_id}")) == 1  # not retried


def test_one_deadline_covers_the_whole_submission(nb, tmp_path):
    """Each request is quick enough on its own; together they are not."""
    with KfpApiServer() as server:
        server.stall[""] = 0.3  # every request
        result = run_cli(nb, tmp_path / "out", server.url, "--kfp-timeout", "1")
    assert result.exit_code == 1
    assert "did not answer within the 1 s limit" in result.stderr
    assert not server.runs  # it gave up before starting a run
    assert 2 <= len(server.requests) <= 4


def test_a_trickling_answer_is_cut_at_the_deadline(nb, tmp_path, monkeypatch):
    monkeypatch.setenv("KALE_TRACE_KFP_TIMEOUT", "0.5")  # the option's environment variable
    body = json.dumps({"multi_user": False, "padding": " " * 200})
    with KfpApiServer() as server:
        server.raw[f"GET {API}/healthz"] = json_answer(body, trickle=0.05)  # 1 byte / 50 ms
        result = run_cli(nb, tmp_path / "out", server.url)
    assert result.exit_code == 1
    assert "did not answer within the 0.5 s limit (connecting)" in result.stderr
    assert server.trickled.wait(timeout=60)  # the server notices the hang-up at its next byte
    ((route, sent, length),) = server.cut_off  # the client hung up half way, once
    assert route == f"GET {API}/healthz" and sent < length
    assert len(server.requests) == 1


def test_a_login_page_is_not_the_kfp_api(nb, tmp_path):
    with KfpApiServer() as server:
        server.raw[""] = login_page("Sign in · Dex")
        result = run_cli(nb, tmp_path / "out", server.url)
    assert result.exit_code == 1
    assert (
        f"the server at {server.url} is not the KFP API (connecting): it answered with an "
        "HTML page titled 'Sign in · Dex'" in result.stderr
    )
    assert "fix: pass the KFP API endpoint as --kfp-host" in result.stderr
    assert "--kfp-cookies" in result.stderr


def test_a_redirect_to_a_login_page_is_reported_not_followed(nb, tmp_path):
    with KfpApiServer() as server:
        server.raw[f"POST {API}/pipelines/upload"] = redirect_to(
            f"{server.url}/login?state=st4te-value&client_id=kfp"
        )
        server.raw["GET /login"] = server.raw["POST /login"] = login_page()
        result = run_cli(nb, tmp_path / "out", server.url)
    assert result.exit_code == 1
    assert (
        f"is not the KFP API (uploading pipeline '{PIPELINE}'): it answered with a redirect "
        f"(HTTP 302) to {server.url}/login" in result.stderr
    )
    assert "st4te-value" not in result.stderr
    assert not server.routes("POST", "/login") and not server.routes("GET", "/login")


def test_bad_json_and_json_of_another_service_are_named(nb, tmp_path):
    with KfpApiServer() as server:
        server.raw[f"POST {API}/pipelines/upload"] = json_answer('{"pipeline_id": "p-1",')
        result = run_cli(nb, tmp_path / "out", server.url)
    assert result.exit_code == 1
    assert "it answered with a body that is not JSON (application/json)" in result.stderr
    assert "Missing the required parameter" not in result.stderr
    with KfpApiServer() as server:
        server.raw[f"POST {API}/pipelines/upload"] = json_answer('{"status": "ok"}')
        result = run_cli(nb, tmp_path / "out", server.url)
    assert result.exit_code == 1
    assert "it answered with JSON without the `pipeline_id` the KFP API sends" in result.stderr
    assert "Missing the required parameter" not in result.stderr
    assert not server.routes("GET", f"{API}/pipelines/", prefix=True)  # stopped right there


def test_an_error_page_echoing_credentials_shows_none_of_them(nb, tmp_path, monkeypatch):
    token_file = tmp_path / "sa-token"
    token_file.write_text("sa-file-token-998877")
    monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(token_file))
    monkeypatch.setenv("KF_PIPELINES_COOKIES", "authservice_session=cookie-556677")
    secrets = ["sa-file-token-998877", "cookie-556677", "pw-hunter2-x"]
    with KfpApiServer() as server:
        server.raw[f"POST {API}/runs"] = echo_headers(500)
        host = server.url.replace("http://", "http://admin:pw-hunter2-x@")
        result = run_cli(nb, tmp_path / "out", host)
    assert result.exit_code == 1
    assert "answered HTTP 500" in result.stderr and "authorization: ***" in result.stderr
    assert "http://admin:***@127.0.0.1" in result.stderr
    echoed = server.routes("POST", f"{API}/runs")[0].headers
    assert echoed["authorization"] == "Bearer sa-file-token-998877"  # they were really sent
    assert not [s for s in secrets if s in result.output]
    written = [p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert not [s for s in secrets for data in written if s.encode() in data]


def test_a_token_in_the_url_or_on_the_command_line_is_never_printed(nb, tmp_path):
    with KfpApiServer(token="cli-token-24680") as server:
        server.fail[f"POST {API}/runs"] = 503
        host = f"{server.url}?token=qs-token-13579"
        result = run_cli(nb, tmp_path / "out", host, "--kfp-token", "cli-token-24680")
    assert result.exit_code == 1
    assert "qs-token-13579" not in result.output and "cli-token-24680" not in result.output


def test_steps_are_named_by_the_compiled_task_names(tmp_path):
    """a__b and a_b are KFP tasks a-b and a-b-2: progress and errors name the right step."""
    twins = write_notebook(
        tmp_path / "twins.ipynb",
        [("step:a__b", "x = 1"), (["step:a_b", "prev:a__b"], "y = x")],
    )
    by_task = RunScript(
        [("RUNNING", {"a-b": "SUCCEEDED", "a-b-2": "RUNNING"}), ("FAILED", {"a-b-2": "FAILED"})]
    )
    with KfpApiServer(by_task) as server:
        result = run_cli(twins, tmp_path / "out", server.url, "--wait")
    assert result.exit_code == 1
    assert "step a__b: succeeded" in result.stderr and "failed steps: a_b" in result.stderr
    by_display = RunScript([("FAILED", {"a__b": "FAILED", "a_b": "CANCELED"})])
    with KfpApiServer(by_display) as server:
        result = run_cli(twins, tmp_path / "out", server.url, "--wait")
    assert "failed steps: a__b, a_b" in result.stderr


def test_ctrl_c_while_following_says_the_run_keeps_going(nb, tmp_path, monkeypatch):
    def interrupt(seconds: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("kale_trace.runners.cluster.time.sleep", interrupt)
    with KfpApiServer(RunScript([("RUNNING", {}), ("SUCCEEDED", {})])) as server:
        result = run_cli(nb, tmp_path / "out", server.url, "--wait")
    assert result.exit_code == 130
    (run_id,) = server.runs
    assert "kale-trace: interrupted; written before the Ctrl-C: the compiled pipeline in" in (
        result.stderr
    )
    assert (
        f"run {run_id} on the KFP server, which keeps running there: "
        f"{server.url}/#/runs/details/{run_id}." in result.stderr
    )


def test_cluster_options_need_kfp_host(nb, tmp_path):
    result = CliRunner().invoke(main, ["run", str(nb), "--no-trace", "--wait"])
    assert result.exit_code == 2 and "--wait need --kfp-host" in result.output


def test_the_fake_server_rejects_what_the_real_one_would():
    """The checks above mean something only if the fake server refuses bad requests."""
    with pytest.raises(Rejected, match="unknown field 'pipeline_name'"):
        check_model(models.V2beta1Run, {"display_name": "r", "pipeline_name": "p"}, "run")
    with pytest.raises(Rejected, match="expected str"):
        check_model(models.V2beta1Run, {"pipeline_version_reference": {"pipeline_id": 1}}, "run")
    with pytest.raises(Rejected, match="not one of"):
        check_model(models.V2beta1Run, {"state": "DONE"}, "run")
    with KfpApiServer() as server:
        body = json.dumps({"display_name": "x", "colour": "red"}).encode()
        request = urllib.request.Request(
            f"{server.url}{API}/experiments", body, {"Content-Type": "application/json"}
        )
        with pytest.raises(urllib.error.HTTPError) as error:
            urllib.request.urlopen(request, timeout=5)
        assert error.value.code == 400 and b"colour" in error.value.read()
        with pytest.raises(urllib.error.HTTPError) as error:
            urllib.request.urlopen(f"{server.url}{API}/pipelines?owner=me", timeout=5)
        assert error.value.code == 400
    assert not server.experiments
