"""A fake KFP API server on loopback, strict about what the client sends.

It serves the v2beta1 REST endpoints kale-trace's cluster runner uses, keeps pipelines,
versions, experiments and runs in memory, and records every request. Every request is checked
against the API as `kfp_server_api` (the generated client shipped with kfp) defines it: query
parameters against the generated method's parameters, JSON bodies field by field against the
models' `attribute_map` / `openapi_types`, multipart uploads against the form fields. Anything
unknown or mistyped is answered with 400, so a test passes only if the real server would
understand the request.
"""

from __future__ import annotations

import email.parser
import email.policy
import inspect
import itertools
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import kfp_server_api
import yaml
from kfp_server_api import models

_PRIMITIVES: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int, str),  # int64 fields travel as JSON strings in grpc-gateway
    "float": (int, float),
    "bool": (bool,),
    "object": (object,),
}


class Rejected(Exception):
    """A request the real server would refuse: answered with this HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def check_type(type_name: str, value: Any, where: str) -> None:
    """Raise Rejected(400) unless `value` is JSON of the swagger type `type_name`."""
    if type_name.startswith("list["):
        if not isinstance(value, list):
            raise Rejected(400, f"{where}: expected a list, got {value!r}")
        for i, item in enumerate(value):
            check_type(type_name[5:-1], item, f"{where}[{i}]")
    elif type_name.startswith("dict("):
        if not isinstance(value, dict):
            raise Rejected(400, f"{where}: expected an object, got {value!r}")
        inner = type_name[5:-1].split(", ", 1)[1]
        for key, item in value.items():
            check_type(inner, item, f"{where}.{key}")
    elif type_name == "datetime":
        if not isinstance(value, str):
            raise Rejected(400, f"{where}: expected a timestamp, got {value!r}")
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    elif type_name in _PRIMITIVES:
        if not isinstance(value, _PRIMITIVES[type_name]) or (
            type_name == "int" and isinstance(value, bool)
        ):
            raise Rejected(400, f"{where}: expected {type_name}, got {value!r}")
    else:
        check_model(getattr(models, type_name), value, where)


def check_model(model: type, data: Any, where: str) -> None:
    """Check a JSON object field by field against a kfp_server_api model; unknown = 400."""
    if not model.openapi_types:  # an enum such as V2beta1RuntimeState
        if data not in model.allowable_values:
            raise Rejected(400, f"{where}: {data!r} is not one of {model.allowable_values}")
        return
    if not isinstance(data, dict):
        raise Rejected(400, f"{where}: expected a {model.__name__} object, got {data!r}")
    attribute = {json_key: attr for attr, json_key in model.attribute_map.items()}
    for key, value in data.items():
        if key not in attribute:
            raise Rejected(400, f"{where}: unknown field {key!r} for {model.__name__}")
        check_type(model.openapi_types[attribute[key]], value, f"{where}.{key}")


def _generated(api: type, method: str) -> tuple[set[str], set[str]]:
    """The query parameters and form files a generated client method may send."""
    source = inspect.getsource(getattr(api, f"{method}_with_http_info"))
    query = set(re.findall(r"query_params\.append\(\('(\w+)'", source))
    files = set(re.findall(r"local_var_files\['(\w+)'\]", source))
    return query, files


@dataclass
class Request:
    """One request as the server received it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any = None  # parsed JSON
    files: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # field -> (name, data)

    @property
    def route(self) -> str:
        return f"{self.method} {self.path}"


@dataclass
class RawAnswer:
    """A misbehaving answer sent instead of the API's: whatever a proxy or another service sends.

    `body` may depend on the request (a server echoing our headers); `trickle` sends it one
    byte at a time, that many seconds apart (a server a read timeout never catches).
    """

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | Callable[[Request], bytes] = b""
    trickle: float = 0.0


def login_page(title: str = "Log in to Kubeflow") -> RawAnswer:
    """What an auth proxy (oauth2-proxy, Dex) serves instead of the API."""
    page = f"<!DOCTYPE html><html><head><title>{title}</title></head><body><form>"
    return RawAnswer(200, {"Content-Type": "text/html; charset=utf-8"}, page.encode())


def redirect_to(location: str, status: int = 302) -> RawAnswer:
    return RawAnswer(status, {"Location": location, "Content-Type": "text/html"}, b"")


def json_answer(text: str, trickle: float = 0.0) -> RawAnswer:
    """A 200 with this text as its JSON body, valid or not."""
    return RawAnswer(200, {"Content-Type": "application/json"}, text.encode(), trickle)


def echo_headers(status: int = 500) -> RawAnswer:
    """An error page that prints the request's headers back, credentials included."""

    def body(request: Request) -> bytes:
        lines = [f"{name}: {value}" for name, value in request.headers.items()]
        return ("upstream error; request was:\n" + "\n".join(lines)).encode()

    return RawAnswer(status, {"Content-Type": "text/plain"}, body)


@dataclass
class RunScript:
    """What successive GETs of a run report: (run state, {task display name: state})."""

    polls: list[tuple[str, dict[str, str]]]
    error: str | None = None  # the run's error message once it has ended badly


class KfpApiServer:
    """An in-memory KFP v2beta1 API on 127.0.0.1; use as a context manager."""

    def __init__(
        self, script: RunScript | None = None, token: str | None = None, multi_user: bool = False
    ) -> None:
        self.script = script or RunScript([("RUNNING", {}), ("SUCCEEDED", {})])
        self.multi_user = multi_user
        self.token = token  # if set, every request must carry `Authorization: Bearer <token>`
        self.fail: dict[str, int] = {}  # route prefix ("GET /apis/v2beta1/runs") -> status
        self.stall: dict[str, float] = {}  # route prefix -> seconds to wait before answering
        self.raw: dict[str, RawAnswer] = {}  # route prefix -> answer instead of the API's
        self.cut_off: list[tuple[str, int, int]] = []  # (route, bytes sent, body length)
        self.trickled = threading.Event()  # a trickled answer ended: sent whole, or cut off
        self.requests: list[Request] = []
        self.pipelines: dict[str, dict[str, Any]] = {}
        self.versions: dict[str, dict[str, Any]] = {}
        self.experiments: dict[str, dict[str, Any]] = {}
        self.runs: dict[str, dict[str, Any]] = {}
        self._polls: dict[str, int] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._http.daemon_threads = True
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._http.server_address[1]}"

    def __enter__(self) -> KfpApiServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.shutdown()
        self._http.server_close()

    def routes(self, method: str, path: str, prefix: bool = False) -> list[Request]:
        """The recorded requests with this method and path (or path prefix)."""
        return [
            r
            for r in self.requests
            if r.method == method and (r.path.startswith(path) if prefix else r.path == path)
        ]

    # ---- seeding state, as if earlier runs had happened ----

    def add_pipeline(self, name: str, namespace: str | None = None) -> str:
        pipeline_id = self._new_id("pipeline")
        self.pipelines[pipeline_id] = {
            "pipeline_id": pipeline_id, "display_name": name, "namespace": namespace,
        }  # fmt: skip
        self._add_version(pipeline_id, name, b"")
        return pipeline_id

    def add_experiment(self, name: str, namespace: str = "") -> str:
        experiment_id = self._new_id("experiment")
        self.experiments[experiment_id] = {
            "experiment_id": experiment_id, "display_name": name, "namespace": namespace,
        }  # fmt: skip
        return experiment_id

    def raw_answer(self, request: Request) -> RawAnswer | None:
        """The misbehaving answer for this request, by the longest matching route prefix."""
        matches = [p for p in self.raw if request.route.startswith(p)]
        return self.raw[max(matches, key=len)] if matches else None

    # ---- the API ----

    def handle(self, request: Request) -> tuple[int, Any]:
        """Answer one request: (status, JSON-able body). Raises Rejected for bad requests."""
        for prefix, seconds in self.stall.items():
            if request.route.startswith(prefix):
                time.sleep(seconds)
        for prefix, status in self.fail.items():
            if request.route.startswith(prefix):
                raise Rejected(status, "injected failure")
        if self.token and request.headers.get("authorization") != f"Bearer {self.token}":
            raise Rejected(401, "missing or wrong bearer token")
        p = request.path
        routes: list[tuple[str, str, type, str, Any]] = [
            ("GET", r"/apis/v2beta1/healthz", kfp_server_api.HealthzServiceApi,
             "healthz_service_get_healthz", self._healthz),
            ("GET", r"/apis/v2beta1/pipelines", kfp_server_api.PipelineServiceApi,
             "pipeline_service_list_pipelines", self._list_pipelines),
            ("GET", r"/apis/v2beta1/pipelines/(?P<pipeline_id>[^/]+)/versions",
             kfp_server_api.PipelineServiceApi, "pipeline_service_list_pipeline_versions",
             self._list_versions),
            ("POST", r"/apis/v2beta1/pipelines/upload", kfp_server_api.PipelineUploadServiceApi,
             "upload_pipeline", self._upload_pipeline),
            ("POST", r"/apis/v2beta1/pipelines/upload_version",
             kfp_server_api.PipelineUploadServiceApi, "upload_pipeline_version",
             self._upload_version),
            ("GET", r"/apis/v2beta1/experiments", kfp_server_api.ExperimentServiceApi,
             "experiment_service_list_experiments", self._list_experiments),
            ("POST", r"/apis/v2beta1/experiments", kfp_server_api.ExperimentServiceApi,
             "experiment_service_create_experiment", self._create_experiment),
            ("POST", r"/apis/v2beta1/runs", kfp_server_api.RunServiceApi,
             "run_service_create_run", self._create_run),
            ("GET", r"/apis/v2beta1/runs/(?P<run_id>[^/:]+)", kfp_server_api.RunServiceApi,
             "run_service_get_run", self._get_run),
        ]  # fmt: skip
        for method, pattern, api, name, answer in routes:
            match = re.fullmatch(pattern, p)
            if method == request.method and match:
                query, files = _generated(api, name)
                unknown = set(request.query) - query
                if unknown:
                    raise Rejected(400, f"unknown query parameter(s) {sorted(unknown)}")
                if set(request.files) - files:
                    raise Rejected(400, f"unknown form field(s) {sorted(request.files)}")
                with self._lock:
                    return answer(request, **match.groupdict())
        raise Rejected(404, f"no route {request.route}")

    def _healthz(self, request: Request) -> tuple[int, Any]:
        return 200, self._json(models.V2beta1GetHealthzResponse(multi_user=self.multi_user))

    def _list_pipelines(self, request: Request) -> tuple[int, Any]:
        namespace = request.query.get("namespace") or None  # none: the shared pipelines
        found = [
            p
            for p in self._filtered(self.pipelines.values(), request)
            if p.get("namespace") == namespace
        ]
        response = models.V2beta1ListPipelinesResponse(
            pipelines=[models.V2beta1Pipeline(**p) for p in found] or None,
            total_size=len(found),
        )
        return 200, self._json(response)

    def _list_versions(self, request: Request, pipeline_id: str) -> tuple[int, Any]:
        if pipeline_id not in self.pipelines:
            raise Rejected(404, f"pipeline {pipeline_id} not found")
        found = [v for v in self.versions.values() if v["pipeline_id"] == pipeline_id]
        sort_by = request.query.get("sort_by", "")
        if sort_by not in ("", "created_at desc", "created_at"):
            raise Rejected(400, f"cannot sort by {sort_by!r}")
        found.sort(key=lambda v: v["created_at"], reverse=sort_by.endswith("desc"))
        found = found[: int(request.query.get("page_size") or len(found) or 1)]
        versions = [models.V2beta1PipelineVersion(**self._public(v)) for v in found]
        response = models.V2beta1ListPipelineVersionsResponse(
            pipeline_versions=versions or None, total_size=len(versions)
        )
        return 200, self._json(response)

    def _upload_pipeline(self, request: Request) -> tuple[int, Any]:
        name = request.query.get("name") or request.query.get("display_name")
        if not name:
            raise Rejected(400, "a pipeline upload needs a name")
        if any(p["display_name"] == name for p in self.pipelines.values()):
            raise Rejected(409, f"a pipeline named {name!r} already exists")
        package = self._package(request)
        pipeline_id = self._new_id("pipeline")
        self.pipelines[pipeline_id] = {
            "pipeline_id": pipeline_id,
            "display_name": name,
            "description": request.query.get("description"),
            "namespace": request.query.get("namespace"),
        }
        self._add_version(pipeline_id, name, package)  # the server makes the first version
        return 200, self._json(models.V2beta1Pipeline(**self.pipelines[pipeline_id]))

    def _upload_version(self, request: Request) -> tuple[int, Any]:
        pipeline_id = request.query.get("pipelineid")
        name = request.query.get("name") or request.query.get("display_name")
        if not name or not pipeline_id:
            raise Rejected(400, "a version upload needs name and pipelineid")
        if pipeline_id not in self.pipelines:
            raise Rejected(404, f"pipeline {pipeline_id} not found")
        if any(
            v["pipeline_id"] == pipeline_id and v["display_name"] == name
            for v in self.versions.values()
        ):
            raise Rejected(409, f"pipeline {pipeline_id} already has a version named {name!r}")
        version = self._add_version(pipeline_id, name, self._package(request))
        return 200, self._json(models.V2beta1PipelineVersion(**self._public(version)))

    def _list_experiments(self, request: Request) -> tuple[int, Any]:
        namespace = request.query.get("namespace", "")
        found = [
            e
            for e in self._filtered(self.experiments.values(), request)
            if e.get("namespace", "") == namespace
        ]
        response = models.V2beta1ListExperimentsResponse(
            experiments=[models.V2beta1Experiment(**e) for e in found] or None,
            total_size=len(found),
        )
        return 200, self._json(response)

    def _create_experiment(self, request: Request) -> tuple[int, Any]:
        check_model(models.V2beta1Experiment, request.body, "experiment")
        name = request.body.get("display_name")
        if not name:
            raise Rejected(400, "experiment.display_name is required")
        if "experiment_id" in request.body:
            raise Rejected(400, "experiment_id is assigned by the server")
        if any(e["display_name"] == name for e in self.experiments.values()):
            raise Rejected(409, f"an experiment named {name!r} already exists")
        experiment_id = self.add_experiment(name, request.body.get("namespace", ""))
        return 200, self._json(models.V2beta1Experiment(**self.experiments[experiment_id]))

    def _create_run(self, request: Request) -> tuple[int, Any]:
        body = request.body
        check_model(models.V2beta1Run, body, "run")
        if not body.get("display_name"):
            raise Rejected(400, "run.display_name is required")
        if body.get("experiment_id") not in self.experiments:
            raise Rejected(404, f"experiment {body.get('experiment_id')!r} not found")
        reference = body.get("pipeline_version_reference") or {}
        if ("pipeline_spec" in body) == bool(reference):
            raise Rejected(400, "give either pipeline_spec or pipeline_version_reference")
        if reference:
            version = self.versions.get(reference.get("pipeline_version_id", ""))
            if version is None or version["pipeline_id"] != reference.get("pipeline_id"):
                raise Rejected(404, f"pipeline version {reference} not found")
        for key in ("run_id", "state", "created_at", "run_details", "finished_at"):
            if key in body:
                raise Rejected(400, f"run.{key} is set by the server")
        run_id = self._new_id("run")
        self.runs[run_id] = dict(body, run_id=run_id, state="PENDING")
        self._polls[run_id] = 0
        return 200, self._json(models.V2beta1Run(**self._run_fields(run_id)))

    def _get_run(self, request: Request, run_id: str) -> tuple[int, Any]:
        if run_id not in self.runs:
            raise Rejected(404, f"run {run_id} not found")
        if self._polls[run_id] > len(self.script.polls) + 20:  # a client that never stops
            raise Rejected(429, f"run {run_id} was polled 20 times after its script ended")
        step = min(self._polls[run_id], len(self.script.polls) - 1)
        self._polls[run_id] += 1
        state, tasks = self.script.polls[step]
        run = self.runs[run_id]
        run["state"] = state
        run["run_details"] = models.V2beta1RunDetails(
            task_details=[
                models.V2beta1PipelineTaskDetail(
                    run_id=run_id, task_id=f"task-{i}", display_name=name, state=task_state
                )
                for i, (name, task_state) in enumerate(tasks.items())
            ]
        )
        if state in ("FAILED", "CANCELED") and self.script.error:
            run["error"] = models.GoogleRpcStatus(code=2, message=self.script.error)
        return 200, self._json(models.V2beta1Run(**self._run_fields(run_id)))

    # ---- helpers ----

    def _new_id(self, kind: str) -> str:
        return f"{kind}-{next(self._ids)}"

    def _add_version(self, pipeline_id: str, name: str, package: bytes) -> dict[str, Any]:
        version_id = self._new_id("version")
        self.versions[version_id] = {
            "pipeline_id": pipeline_id,
            "pipeline_version_id": version_id,
            "display_name": name,
            "created_at": datetime.now(timezone.utc),
            "package": package,
        }
        return self.versions[version_id]

    @staticmethod
    def _public(version: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in version.items() if k != "package"}

    def _run_fields(self, run_id: str) -> dict[str, Any]:
        run = dict(self.runs[run_id])
        for key, model in (
            ("pipeline_version_reference", models.V2beta1PipelineVersionReference),
            ("runtime_config", models.V2beta1RuntimeConfig),
        ):
            if isinstance(run.get(key), dict):
                run[key] = model(**run[key])
        return run

    @staticmethod
    def _package(request: Request) -> bytes:
        if "uploadfile" not in request.files:
            raise Rejected(400, "the upload has no uploadfile")
        filename, data = request.files["uploadfile"]
        if not filename.endswith((".yaml", ".yml", ".json", ".zip", ".tar.gz", ".tgz")):
            raise Rejected(400, f"unsupported package file {filename!r}")
        spec = yaml.safe_load(data)
        if not isinstance(spec, dict) or "pipelineInfo" not in spec:
            raise Rejected(400, "the package is not a KFP pipeline spec")
        return data

    @staticmethod
    def _filtered(items: Any, request: Request) -> list[dict[str, Any]]:
        """Apply a JSON filter; only EQUALS on display_name, which is all the client sends."""
        items = list(items)
        if "filter" not in request.query:
            return items
        raw = json.loads(request.query["filter"])
        snake = {
            "predicates": [
                {re.sub(r"([A-Z])", lambda m: "_" + m[1].lower(), k): v for k, v in p.items()}
                for p in raw.get("predicates", [])
            ]
        }
        operations = models.V2beta1PredicateOperation.allowable_values
        for predicate in snake["predicates"]:  # proto JSON: an enum may travel as its number
            if isinstance(predicate.get("operation"), int):
                predicate["operation"] = operations[predicate["operation"]]
        check_model(models.V2beta1Filter, snake, "filter")
        for predicate in snake["predicates"]:
            if predicate.get("operation") != "EQUALS" or predicate.get("key") != "display_name":
                raise Rejected(400, f"unsupported filter predicate {predicate}")
            items = [i for i in items if i["display_name"] == predicate.get("string_value")]
        return items

    @staticmethod
    def _json(model: Any) -> Any:
        return kfp_server_api.ApiClient().sanitize_for_serialization(model)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output clean

            def _serve(self) -> None:
                url = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                request = Request(self.command, url.path, query, headers)
                answer = server.raw_answer(request)
                if answer is not None:
                    server.requests.append(request)
                    _send_raw(self, server, request, answer)
                    return
                try:
                    _parse_body(request, headers.get("content-type", ""), raw)
                    server.requests.append(request)
                    status, body = server.handle(request)
                except Rejected as error:
                    status = error.status
                    body = {"code": 3, "message": str(error), "details": []}
                data = json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # a client that gave up waiting (a stall test)
                    self.close_connection = True

            do_GET = do_POST = do_DELETE = _serve

        return Handler


def _send_raw(
    handler: BaseHTTPRequestHandler, server: KfpApiServer, request: Request, answer: RawAnswer
) -> None:
    """Send a misbehaving answer: stalled, trickled a byte at a time, or as it is."""
    for prefix, seconds in server.stall.items():
        if request.route.startswith(prefix):
            time.sleep(seconds)
    data = answer.body(request) if callable(answer.body) else answer.body
    handler.send_response(answer.status)
    for name, value in answer.headers.items():
        handler.send_header(name, value)
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    if not answer.trickle:
        handler.wfile.write(data)
        return
    sent = 0
    try:
        for byte in data:
            handler.wfile.write(bytes([byte]))
            handler.wfile.flush()
            sent += 1
            time.sleep(answer.trickle)
    except OSError:  # the client hung up: record how far it let us get
        server.cut_off.append((request.route, sent, len(data)))
        handler.close_connection = True
    finally:
        server.trickled.set()


def _parse_body(request: Request, content_type: str, raw: bytes) -> None:
    if not raw:
        return
    if content_type.startswith("application/json"):
        try:
            request.body = json.loads(raw)
        except ValueError as error:
            raise Rejected(400, f"the body is not JSON: {error}") from error
    elif content_type.startswith("multipart/form-data"):
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + raw
        )
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            request.files[name] = (part.get_filename() or "", part.get_payload(decode=True))
    else:
        raise Rejected(400, f"unexpected content type {content_type!r}")
