"""Run a compiled notebook on a Kubeflow Pipelines cluster through kfp.Client.

Upload the compiled YAML (a new version when the pipeline name exists), start a run in the
experiment (created if missing) and, if asked, follow it until it ends. Every client error
becomes a KaleTraceError naming the server and what we were doing; kfp's own chatter (stdout
links, warnings, healthz retries) is kept out of the way of our messages.

The whole exchange that submits the run has one deadline (`--kfp-timeout`, default 5 min),
however the server misbehaves: silent, stalled, or trickling its answer a byte at a time.
No request is retried and no redirect followed, so an answer that is not the KFP API's (a
login page, a redirect to one, JSON of another service) is reported as what it is.
"""

from __future__ import annotations

import contextlib
import hashlib
import html
import io
import json
import os
import re
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from types import FrameType
from typing import Any, NoReturn
from urllib.parse import urlsplit, urlunsplit

import yaml

from kale_trace.codegen.kfp_compile import task_names
from kale_trace.compiler import Compiled
from kale_trace.errors import KaleTraceError
from kale_trace.safe_text import add_cookies, add_environment, add_secret, add_url, public_url

# States after which a run never changes again; CANCELING and PAUSED are not among them.
# kfp's own wait_for_run_completion forgets CANCELED and would wait until its timeout.
FINAL_STATES = frozenset({"SUCCEEDED", "FAILED", "CANCELED", "SKIPPED"})
DEFAULT_TIMEOUT = 300.0  # seconds for the whole submission, and for each status check
TIMEOUT_ENV = "KALE_TRACE_KFP_TIMEOUT"
NOT_KFP_FIX = (
    "pass the KFP API endpoint as --kfp-host (e.g. http://localhost:8080 after `kubectl "
    "port-forward -n kubeflow svc/ml-pipeline-ui 8080:80`), or credentials that get past a "
    "login page: --kfp-cookies (e.g. authservice_session=...) or --kfp-token"
)


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
    timeout: float = DEFAULT_TIMEOUT  # the whole submission; then each status check


@dataclass(frozen=True)
class ClusterRun:
    run_id: str
    url: str  # the run's page in the KFP UI
    pipeline_id: str
    version_id: str
    experiment_id: str
    state: str | None  # the last state seen; None when not waiting


class _OutOfTime(BaseException):
    """The deadline passed in the middle of a request (a BaseException: nobody swallows it)."""


class _NotKfp(Exception):
    """The server answered, but not as the KFP API would; `answer` says what it sent."""

    def __init__(self, answer: str) -> None:
        super().__init__(answer)
        self.answer = answer


class _Session:
    """One conversation with one KFP server: its client, its deadline, its public name."""

    def __init__(self, host: str, options: ClusterOptions) -> None:
        self.host = host
        self.shown = public_url(host)  # never the password or a query-string token
        self.options = options
        self.ends = time.monotonic() + options.timeout
        self.client: Any = None

    def remaining(self) -> float:
        return self.ends - time.monotonic()

    def restart_clock(self) -> None:
        """A new deadline, for one status check while following a run."""
        self.ends = time.monotonic() + self.options.timeout

    @contextlib.contextmanager
    def calling(self, doing: str) -> Iterator[None]:
        """Silence kfp, hold the deadline, and turn client failures into KaleTraceError."""
        import kfp_server_api
        import urllib3

        try:
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                warnings.simplefilter("ignore")
                with _alarm(self.remaining()):
                    yield
        except _OutOfTime:
            raise self.too_slow(doing) from None
        except _NotKfp as error:
            raise self.not_kfp(doing, error.answer) from None
        except kfp_server_api.ApiException as error:
            _raise_http(self, doing, error)
        except (urllib3.exceptions.HTTPError, OSError) as error:
            if self.remaining() <= 0:
                raise self.too_slow(doing) from None
            reason = str(getattr(error, "reason", None) or error)
            raise KaleTraceError(
                f"cannot reach the KFP server at {self.shown} ({doing})",
                details=re.sub(r"<[^>]*>: ", "", reason),  # urllib3 puts object reprs first
                fix="check --kfp-host, and that the server (or `kubectl port-forward`) is running",
            ) from None
        except ValueError as error:  # kfp's own checks: duplicate names, missing experiment
            raise KaleTraceError(f"KFP server at {self.shown}, {doing}: {error}") from None

    def too_slow(self, doing: str) -> KaleTraceError:
        return KaleTraceError(
            f"the KFP server at {self.shown} did not answer within the "
            f"{self.options.timeout:g} s limit ({doing}): it sent nothing, or too slowly",
            fix="check that the server (or `kubectl port-forward`) is healthy; the limit is for "
            "the whole submission, and for each status check with --wait; to wait longer, pass "
            f"--kfp-timeout SECONDS (or set {TIMEOUT_ENV})",
        )

    def not_kfp(self, doing: str, answer: str) -> KaleTraceError:
        return KaleTraceError(
            f"the server at {self.shown} is not the KFP API ({doing}): it answered with {answer}",
            fix=NOT_KFP_FIX,
        )

    def need(self, value: Any, field: str, doing: str) -> Any:
        """A field the KFP API always sends; its absence means another service answered."""
        found = getattr(value, field, None)
        if not found:
            raise self.not_kfp(doing, f"JSON without the `{field}` the KFP API sends")
        return found


@contextlib.contextmanager
def _alarm(seconds: float) -> Iterator[None]:
    """Interrupt whatever blocks (a stalled or trickling read) once `seconds` have passed.

    Socket timeouts bound each read, not the answer: a server sending a byte a second never
    trips them. SIGALRM does; off the main thread only the per-request timeouts remain.
    """
    if seconds <= 0:
        raise _OutOfTime()
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    armed = [True]

    def ring(signum: int, frame: FrameType | None) -> None:
        if armed[0]:
            raise _OutOfTime()

    previous = signal.signal(signal.SIGALRM, ring)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        armed[0] = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run_on_cluster(
    compiled: Compiled,
    options: ClusterOptions,
    progress: Callable[[str], None] = lambda _: None,
    wrote: Callable[[str], None] = lambda _: None,
) -> ClusterRun:
    """Upload the pipeline, start a run and, with `wait`, follow it; raise if it did not succeed.

    `wrote` is told what now exists on the server (the pipeline version, the run), so that
    an interruption can say so.
    """
    host = options.host if "://" in options.host else f"https://{options.host}"
    host = host.rstrip("/")
    _remember_secrets(host, options)
    session = _Session(host, options)
    client = _connect(session)
    ns = options.namespace or client.get_user_namespace() or None  # kfp's context file
    flow = compiled.dataflow
    pipeline_id, version_id = _upload(session, compiled, ns, progress)
    wrote(f"pipeline '{flow.pipeline}' version {version_id} on the KFP server at {session.shown}")
    experiment_name = options.experiment or _default_experiment(flow.notebook.config.experiment)
    doing = f"finding or creating experiment '{experiment_name}'"
    with session.calling(doing):
        experiment = client.create_experiment(experiment_name, namespace=ns)
    experiment_id = session.need(experiment, "experiment_id", doing)
    progress(f"experiment '{experiment_name}' ({experiment_id})")
    run_name = options.run_name or f"{flow.pipeline} {_stamp()}"
    doing = f"creating run '{run_name}'"
    with session.calling(doing):
        run = client.run_pipeline(
            experiment_id, run_name, pipeline_id=pipeline_id, version_id=version_id
        )
    run_id = session.need(run, "run_id", doing)
    ui = (os.environ.get("KF_PIPELINES_UI_ENDPOINT") or _site(host)).rstrip("/")
    url = f"{ui}/#/runs/details/{run_id}"
    progress(f"started run '{run_name}' ({run_id}): {url}")
    wrote(f"run {run_id} on the KFP server, which keeps running there: {url}")
    state = _follow(session, run_id, url, compiled, progress) if options.wait else None
    return ClusterRun(run_id, url, pipeline_id, version_id, experiment_id, state)


def _site(url: str) -> str:
    """The server's address for a browser: no credentials, no query string."""
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, parts.path, "", "")).rstrip("/")


def _remember_secrets(host: str, options: ClusterOptions) -> None:
    """Every credential this run may use, so that no output shows it."""
    add_url(host)
    add_secret(options.token)
    add_cookies(options.cookies)
    add_environment()


def _upload(
    session: _Session, compiled: Compiled, ns: str | None, progress: Callable[[str], None]
) -> tuple[str, str]:
    """Upload the package as a new pipeline, or as a new version of the existing one."""
    client, name, package = session.client, compiled.dataflow.pipeline, str(compiled.yaml_path)
    with session.calling(f"looking up pipeline '{name}'"):
        pipeline_id = _find_pipeline(client, name, ns)
    if pipeline_id is None:
        doing = f"uploading pipeline '{name}'"
        with session.calling(doing):
            pipeline = client.upload_pipeline(package, pipeline_name=name, namespace=ns)
        pipeline_id = session.need(pipeline, "pipeline_id", doing)
        with session.calling(doing):
            listed = client.list_pipeline_versions(
                pipeline_id, page_size=1, sort_by="created_at desc"
            )
        if not listed.pipeline_versions:
            raise KaleTraceError(
                f"the KFP server at {session.shown} made pipeline '{name}' without a version"
            )
        version_id = session.need(listed.pipeline_versions[0], "pipeline_version_id", doing)
        progress(f"uploaded pipeline '{name}' ({pipeline_id})")
        return pipeline_id, version_id
    version_name = f"{name} {_stamp()} {_digest(compiled)}"
    doing = f"uploading a new version of pipeline '{name}'"
    with session.calling(doing):
        version = client.upload_pipeline_version(package, version_name, pipeline_id=pipeline_id)
    version_id = session.need(version, "pipeline_version_id", doing)
    progress(f"uploaded version '{version_name}' of pipeline '{name}' ({pipeline_id})")
    return pipeline_id, version_id


def _follow(
    session: _Session,
    run_id: str,
    url: str,
    compiled: Compiled,
    progress: Callable[[str], None],
) -> str:
    """Poll the run, reporting run and task state changes, until it reaches a final state.

    Each status check has the whole deadline again: the run may take hours, the server may
    not take minutes to say how it is doing. Ctrl-C stops following, not the run.
    """
    labels = _step_labels(compiled)
    state: str | None = None
    tasks: dict[str, str] = {}
    while True:
        session.restart_clock()
        doing = f"polling run {run_id}, which may still be running: {url}"
        with session.calling(doing):
            run = session.client.get_run(run_id)
        session.need(run, "run_id", doing)
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
        time.sleep(session.options.poll_interval)
    if state != "SUCCEEDED":
        _raise_ended(run, run_id, url, state, tasks, compiled)
    return state


def _step_labels(compiled: Compiled) -> dict[str, str]:
    """The name KFP reports for each task (its task name or display name) -> the step's name.

    Read from the compiled spec: KFP's task names are its own sanitisation of the component
    names, not something to re-derive (`a__b` and `a_b` are `a-b` and `a-b-2`).
    """
    with open(compiled.yaml_path, encoding="utf-8") as handle:
        spec = next(yaml.load_all(handle, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)))
    steps = {s.display_name for s in compiled.dataflow.steps}
    names = {task: shown for task, shown in task_names(spec).items() if shown in steps}
    return {**names, **{shown: shown for shown in names.values()}}  # display names win


def _raise_ended(
    run: Any, run_id: str, url: str, state: str | None, tasks: dict[str, str], compiled: Compiled
) -> NoReturn:
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
        notebook=str(compiled.dataflow.notebook.path),
        details=details or None,
        fix=f"open {url} for each step's logs",
    )


def _find_pipeline(client: Any, name: str, namespace: str | None) -> str | None:
    """The pipeline's id, if one has this name; unlike get_pipeline_id, namespace-aware."""
    predicate = {"operation": "EQUALS", "key": "display_name", "stringValue": name}
    listed = client.list_pipelines(
        filter=json.dumps({"predicates": [predicate]}), namespace=namespace, page_size=2
    )
    found = listed.pipelines or []
    if len(found) > 1:
        raise ValueError(f"several pipelines are named '{name}'; rename the notebook's pipeline")
    if found and not found[0].pipeline_id:
        raise _NotKfp("a pipeline list whose pipelines have no `pipeline_id`")
    return found[0].pipeline_id if found else None


def _connect(session: _Session) -> Any:
    """A kfp.Client with kfp's own credential conventions, checked with one healthz call."""
    import kfp
    import urllib3

    class _Client(kfp.Client):
        _healthz: Any = None

        def _load_config(self, *args: Any, **kwargs: Any) -> Any:
            config = super()._load_config(*args, **kwargs)
            # urllib3 retries each failed read 3 times (4 timeouts for one request) and
            # follows redirects, posting the package to a login page: neither, ever.
            config.retries = urllib3.Retry(total=0, redirect=False)
            return config

        def get_kfp_healthz(self, sleep_duration: int = 5) -> Any:
            # kfp retries 5 times, 5 s apart, logging tracebacks; a CLI should fail at once.
            if self._healthz is None:
                _bound_requests(session, self._healthz_api.api_client.rest_client)
                self._healthz = self._healthz_api.healthz_service_get_healthz()
            return self._healthz

    options = session.options
    credentials = None
    if os.environ.get("KF_PIPELINES_SA_TOKEN_PATH") and not options.token:
        from kfp.client.set_volume_credentials import ServiceAccountTokenVolumeCredentials

        credentials = ServiceAccountTokenVolumeCredentials()
    with session.calling("connecting"):
        session.client = client = _Client(
            host=session.host,
            namespace=options.namespace or "kubeflow",
            existing_token=options.token,
            cookies=options.cookies,
            credentials=credentials,
        )
        healthz = client.get_kfp_healthz()  # kfp skips it when it knows a namespace
    if healthz.multi_user and not (options.namespace or client.get_user_namespace()):
        raise KaleTraceError(
            f"the KFP server at {session.shown} is multi-user: it needs to know your namespace",
            fix="pass --kfp-namespace with your Kubeflow profile's namespace",
        )
    return client


def _bound_requests(session: _Session, rest: Any) -> None:
    """Every request (one REST client serves every API): within the deadline, answer checked.

    kfp sends requests without a timeout; each gets the time left (the alarm, a little
    sooner, is what usually ends a slow one), and each answer must be the KFP API's JSON.
    """
    if getattr(rest, "_kale_bounded", False):
        return
    request = rest.request

    def bounded(*args: Any, _request_timeout: Any = None, **kwargs: Any) -> Any:
        left = session.remaining()
        if left <= 0:
            raise _OutOfTime()
        response = request(*args, _request_timeout=(left + 1.0, left + 1.0), **kwargs)
        _check_answer(response)
        return response

    rest.request = bounded
    rest._kale_bounded = True


def _check_answer(response: Any) -> None:
    """Raise _NotKfp unless a successful answer is a JSON object, as every KFP answer is."""
    data = getattr(response, "data", b"") or b""
    if not data.strip():
        return
    kind = (response.getheader("content-type") or "").split(";")[0].strip().lower()
    answer = _describe(kind, data)
    if answer is not None:
        raise _NotKfp(answer)


def _describe(kind: str, data: bytes) -> str | None:
    """What a body is, if it is not a JSON object: an HTML page (with its title), text, ..."""
    text = data.decode("utf-8", "replace")
    if "html" in kind or text.lstrip()[:1] == "<":
        title = _html_title(text)
        return f"an HTML page titled {title!r}" if title else "an HTML page without a title"
    try:
        value = json.loads(text)
    except ValueError:
        snippet = " ".join(text.split())[:80]
        return f"a body that is not JSON ({kind or 'no content type'}): {snippet!r}"
    if not isinstance(value, dict):
        return f"JSON that is not an object: {type(value).__name__}"
    return None


def _html_title(text: str) -> str | None:
    found = re.search(r"<title[^>]*>(.*?)</title", text, re.IGNORECASE | re.DOTALL)
    if not found:
        return None
    return " ".join(html.unescape(found[1]).split())[:100] or None


def _raise_http(session: _Session, doing: str, error: Any) -> NoReturn:
    """An HTTP error status as one message: what the server said, and what to do."""
    status = error.status or 0
    shown = session.shown
    if not status:  # kfp_server_api's own wrapping of TLS and request errors
        raise KaleTraceError(
            f"cannot reach the KFP server at {shown} ({doing})", details=str(error.reason)
        ) from None
    if 300 <= status < 400:
        location = _location(error.headers, session.host)
        raise session.not_kfp(
            doing, f"a redirect (HTTP {status}) to {location}" if location else f"HTTP {status}"
        ) from None
    message = _server_message(error.body, error.headers)
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
        f"the KFP server at {shown} answered HTTP {status} {error.reason or ''}".rstrip()
        + f" while {doing}",
        details=message,
        fix=fix,
    ) from None


def _location(headers: Any, host: str) -> str | None:
    """Where a redirect points, without its query string (state, tokens)."""
    location = (headers or {}).get("Location") or (headers or {}).get("location")
    if not location:
        return None
    parts = urlsplit(location if "://" in location else host + "/" + location.lstrip("/"))
    return public_url(urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")))


def _server_message(body: Any, headers: Any = None) -> str | None:
    """The server's own error message, short: grpc-gateway puts it in JSON `message`."""
    if not body:
        return None
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
    kind = ((headers or {}).get("Content-Type") or "").split(";")[0].strip().lower()
    if "html" in kind or text.lstrip()[:1] == "<":
        title = _html_title(text)
        return f"(an HTML page titled {title!r})" if title else "(an HTML page)"
    with contextlib.suppress(ValueError, AttributeError):
        text = json.loads(text).get("message") or text
    return text[:2000]


def _default_experiment(configured: str | None) -> str:
    """The notebook's experiment (Kale's `experiment_name` or `experiment.name`), else kfp's."""
    return configured or os.environ.get("KF_PIPELINES_DEFAULT_EXPERIMENT_NAME") or "Default"


def _stamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H-%M-%S")


def _digest(compiled: Compiled) -> str:
    return hashlib.sha256(compiled.yaml_path.read_bytes()).hexdigest()[:8]
