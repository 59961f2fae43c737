"""Run a compiled notebook on a Kubeflow Pipelines cluster through kfp.Client.

Upload the compiled YAML (a new version when the pipeline name exists), start a run in the
experiment (created if missing) and, if asked, follow it until it ends. Every client error
becomes a KaleTraceError naming the server and what we were doing; kfp's own chatter (stdout
links, warnings, healthz retries) is kept out of the way of our messages.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, NoReturn

from kale_trace.compiler import Compiled
from kale_trace.errors import KaleTraceError
from kale_trace.tracer.dataflow import Dataflow

# States after which a run never changes again; CANCELING and PAUSED are not among them.
# kfp's own wait_for_run_completion forgets CANCELED and would wait until its timeout.
FINAL_STATES = frozenset({"SUCCEEDED", "FAILED", "CANCELED", "SKIPPED"})
REQUEST_TIMEOUT = 60.0  # seconds to connect, or to wait for an answer, per request


@dataclass(frozen=True)
class ClusterOptions:
    host: str
    experiment: str | None = None  # default: metadata experiment_name, else kfp's "Default"
    run_name: str | None = None  # default: "<pipeline> <UTC time>", as kfp names runs
    namespace: str | None = None  # multi-user Kubeflow: the profile namespace
    token: str | None = None  # kfp.Client(existing_token=...)
    cookies: str | None = None  # kfp.Client(cookies=...), e.g. "authservice_session=..."
    wait: bool = False
    poll_interval: float = 5.0


@dataclass(frozen=True)
class ClusterRun:
    run_id: str
    url: str  # the run's page in the KFP UI
    pipeline_id: str
    version_id: str
    experiment_id: str
    state: str | None  # the last state seen; None when not waiting


def run_on_cluster(
    compiled: Compiled,
    options: ClusterOptions,
    progress: Callable[[str], None] = lambda _: None,
) -> ClusterRun:
    """Upload the pipeline, start a run and, with `wait`, follow it; raise if it did not succeed."""
    host = options.host if "://" in options.host else f"https://{options.host}"
    host = host.rstrip("/")
    ui = os.environ.get("KF_PIPELINES_UI_ENDPOINT", host).rstrip("/")
    flow = compiled.dataflow
    name = flow.pipeline
    client = _connect(host, options)
    ns = options.namespace or client.get_user_namespace() or None  # kfp's context file

    with _calling(host, f"looking up pipeline '{name}'"):
        pipeline_id = _find_pipeline(client, name, ns)
    package = str(compiled.yaml_path)
    if pipeline_id is None:
        with _calling(host, f"uploading pipeline '{name}'"):
            pipeline = client.upload_pipeline(package, pipeline_name=name, namespace=ns)
            pipeline_id = pipeline.pipeline_id
            listed = client.list_pipeline_versions(
                pipeline_id, page_size=1, sort_by="created_at desc"
            )
        if not listed.pipeline_versions:
            raise KaleTraceError(
                f"the KFP server at {host} made pipeline '{name}' without a version"
            )
        version_id = listed.pipeline_versions[0].pipeline_version_id
        progress(f"uploaded pipeline '{name}' ({pipeline_id})")
    else:
        version_name = f"{name} {_stamp()} {_digest(compiled)}"
        with _calling(host, f"uploading a new version of pipeline '{name}'"):
            version = client.upload_pipeline_version(package, version_name, pipeline_id=pipeline_id)
        version_id = version.pipeline_version_id
        progress(f"uploaded version '{version_name}' of pipeline '{name}' ({pipeline_id})")

    experiment_name = options.experiment or _metadata_experiment(flow.notebook.metadata)
    with _calling(host, f"finding or creating experiment '{experiment_name}'"):
        experiment = client.create_experiment(experiment_name, namespace=ns)
    progress(f"experiment '{experiment_name}' ({experiment.experiment_id})")

    run_name = options.run_name or f"{name} {_stamp()}"
    with _calling(host, f"creating run '{run_name}'"):
        run = client.run_pipeline(
            experiment.experiment_id, run_name, pipeline_id=pipeline_id, version_id=version_id
        )
    url = f"{ui}/#/runs/details/{run.run_id}"
    progress(f"started run '{run_name}' ({run.run_id}): {url}")
    state = (
        _follow(client, host, run.run_id, url, flow, options, progress) if options.wait else None
    )
    return ClusterRun(run.run_id, url, pipeline_id, version_id, experiment.experiment_id, state)


def _follow(
    client: Any,
    host: str,
    run_id: str,
    url: str,
    flow: Dataflow,
    options: ClusterOptions,
    progress: Callable[[str], None],
) -> str:
    """Poll the run, reporting run and task state changes, until it reaches a final state."""
    labels = {s.name.replace("_", "-"): s.display_name for s in flow.steps}
    state: str | None = None
    tasks: dict[str, str] = {}
    try:
        while True:
            with _calling(host, f"polling run {run_id}, which may still be running: {url}"):
                run = client.get_run(run_id)
            lines = []
            for task in (run.run_details.task_details or []) if run.run_details else []:
                label = labels.get(task.display_name or "")
                if label and task.state and tasks.get(label) != task.state:
                    tasks[label] = task.state
                    lines.append(f"  step {label}: {task.state.lower()}")
            if run.state != state:
                state = run.state
                line = f"run {run_id}: {(state or 'unknown').lower()}"
                lines = [*lines, line] if state in FINAL_STATES else [line, *lines]
            for line in lines:
                progress(line)
            if state in FINAL_STATES:
                break
            time.sleep(options.poll_interval)
    except KeyboardInterrupt:
        raise KaleTraceError(
            f"stopped following run {run_id}; it keeps running on the cluster",
            fix=f"watch it at {url}",
        ) from None
    if state != "SUCCEEDED":
        failed = [label for label, s in tasks.items() if s in ("FAILED", "CANCELED")]
        error = run.error.message if run.error and run.error.message else None
        details = "\n".join(
            line
            for line in (
                f"failed steps: {', '.join(failed)}" if failed else "",
                f"server says: {error}" if error else "",
            )
            if line
        )
        raise KaleTraceError(
            f"run {run_id} ended {state.lower() if state else 'in an unknown state'}: {url}",
            notebook=str(flow.notebook.path),
            details=details or None,
            fix=f"open {url} for each step's logs",
        )
    return state


def _find_pipeline(client: Any, name: str, namespace: str | None) -> str | None:
    """The pipeline's id, if one has this name; unlike get_pipeline_id, namespace-aware."""
    predicate = {"operation": "EQUALS", "key": "display_name", "stringValue": name}
    listed = client.list_pipelines(
        filter=json.dumps({"predicates": [predicate]}), namespace=namespace, page_size=2
    )
    found = listed.pipelines or []
    if len(found) > 1:
        raise ValueError(f"several pipelines are named '{name}'; rename the notebook's pipeline")
    return found[0].pipeline_id if found else None


def _connect(host: str, options: ClusterOptions) -> Any:
    """A kfp.Client with kfp's own credential conventions, checked with one healthz call."""
    import kfp

    class _Client(kfp.Client):
        _healthz: Any = None

        def get_kfp_healthz(self, sleep_duration: int = 5) -> Any:
            # kfp retries 5 times, 5 s apart, logging tracebacks; a CLI should fail at once.
            if self._healthz is None:
                healthz = self._healthz_api.healthz_service_get_healthz
                self._healthz = healthz(_request_timeout=_timeouts())
            return self._healthz

    credentials = None
    if os.environ.get("KF_PIPELINES_SA_TOKEN_PATH") and not options.token:
        from kfp.client.set_volume_credentials import ServiceAccountTokenVolumeCredentials

        credentials = ServiceAccountTokenVolumeCredentials()
    with _calling(host, "connecting"):
        client = _Client(
            host=host,
            namespace=options.namespace or "kubeflow",
            existing_token=options.token,
            cookies=options.cookies,
            credentials=credentials,
        )
        healthz = client.get_kfp_healthz()  # kfp skips it when it knows a namespace
    if healthz.multi_user and not (options.namespace or client.get_user_namespace()):
        raise KaleTraceError(
            f"the KFP server at {host} is multi-user: it needs to know your namespace",
            fix="pass --kfp-namespace with your Kubeflow profile's namespace",
        )
    # kfp sends every request without a timeout: a host that swallows packets would hang us.
    rest = client._healthz_api.api_client.rest_client  # one REST client serves every API
    request = rest.request

    def bounded(*args: Any, _request_timeout: Any = None, **kwargs: Any) -> Any:
        return request(*args, _request_timeout=_request_timeout or _timeouts(), **kwargs)

    rest.request = bounded
    return client


def _timeouts() -> tuple[float, float]:
    return (REQUEST_TIMEOUT, REQUEST_TIMEOUT)  # (connect, read), as kfp_server_api takes them


@contextlib.contextmanager
def _calling(host: str, doing: str) -> Iterator[None]:
    """Silence kfp's prints and warnings, and turn client failures into KaleTraceError."""
    import kfp_server_api
    import urllib3

    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    except kfp_server_api.ApiException as error:
        _raise_http(host, doing, error)
    except (urllib3.exceptions.HTTPError, OSError) as error:
        reason = str(getattr(error, "reason", None) or error)
        raise KaleTraceError(
            f"cannot reach the KFP server at {host} ({doing})",
            details=re.sub(r"<[^>]*>: ", "", reason),  # urllib3 puts object reprs first
            fix="check --kfp-host, and that the server (or `kubectl port-forward`) is running",
        ) from None
    except ValueError as error:  # kfp's own checks: duplicate names, missing experiment
        raise KaleTraceError(f"KFP server at {host}, {doing}: {error}") from None


def _raise_http(host: str, doing: str, error: Any) -> NoReturn:
    status = error.status or 0
    if not status:  # kfp_server_api's own wrapping of TLS and request errors
        raise KaleTraceError(
            f"cannot reach the KFP server at {host} ({doing})", details=str(error.reason)
        ) from None
    message = _server_message(error.body)
    if status in (401, 403):
        fix = (
            "give credentials: --kfp-token (or KF_PIPELINES_TOKEN), --kfp-cookies, or "
            "KF_PIPELINES_SA_TOKEN_PATH; on multi-user Kubeflow also --kfp-namespace"
        )
    elif status == 404 and doing == "connecting":
        fix = "--kfp-host must be the KFP API endpoint (the URL the KFP UI is served from)"
    else:
        fix = "check the KFP server's logs" if status >= 500 else None
    raise KaleTraceError(
        f"the KFP server at {host} answered HTTP {status} {error.reason or ''}".rstrip()
        + f" while {doing}",
        details=message,
        fix=fix,
    ) from None


def _server_message(body: Any) -> str | None:
    """The server's own error message, short: grpc-gateway puts it in JSON `message`."""
    if not body:
        return None
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
    with contextlib.suppress(ValueError, AttributeError):
        text = json.loads(text).get("message") or text
    return text[:2000]


def _metadata_experiment(metadata: dict[str, Any]) -> str:
    """Kale's `experiment_name`, or its older `experiment: {name: ...}`, else kfp's default."""
    old = metadata.get("experiment")
    name = metadata.get("experiment_name") or (old.get("name") if isinstance(old, dict) else None)
    return name or os.environ.get("KF_PIPELINES_DEFAULT_EXPERIMENT_NAME") or "Default"


def _stamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H-%M-%S")


def _digest(compiled: Compiled) -> str:
    return hashlib.sha256(compiled.yaml_path.read_bytes()).hexdigest()[:8]
