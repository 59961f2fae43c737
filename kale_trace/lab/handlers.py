"""REST handlers under /kale-trace/: start, poll and cancel jobs; read the server's KFP setup.

Every handler answers at once: jobs run in worker processes (kale_trace.lab.jobs), so the
server's event loop never waits for a dry run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import tornado.web
from jupyter_server.base.handlers import APIHandler, JupyterHandler
from jupyter_server.utils import url_path_join

from kale_trace.lab.jobs import JobManager


class _Base(APIHandler):
    @property
    def manager(self) -> JobManager:
        return self.settings["kale_trace_jobs"]

    def answer(self, body: Any, status: int = 200) -> None:
        self.set_status(status)
        self.finish(json.dumps(body, default=str))

    def inside_root(self, relative: str, what: str) -> Path:
        """A path the browser sent, refused unless it stays inside the server's root."""
        root = self.manager.root
        path = (root / relative).resolve()
        if path != root and root not in path.parents:
            raise tornado.web.HTTPError(400, f"{what} {relative!r} is outside the server's root")
        return path


class JobsHandler(_Base):
    """POST starts a job ({action, path, options}); GET lists the jobs."""

    @tornado.web.authenticated
    def get(self) -> None:
        self.answer({"jobs": [job.view(len(job.events)) for job in self.manager.jobs.values()]})

    @tornado.web.authenticated
    def post(self) -> None:
        body = self.get_json_body() or {}
        notebook = self.inside_root(str(body.get("path", "")), "notebook")
        if notebook.suffix != ".ipynb" or not notebook.is_file():
            raise tornado.web.HTTPError(400, f"no notebook at {body.get('path')!r}")
        options = dict(body.get("options") or {})
        outdir_text = str(options.pop("outdir", "") or ".kale")
        outdir = (notebook.parent / outdir_text).resolve()
        root = self.manager.root
        if outdir != root and root not in outdir.parents:
            raise tornado.web.HTTPError(400, f"output folder {outdir_text!r} is outside the root")
        sample = options.get("sample_params")
        if sample:
            options["sample_params"] = str(self.inside_root(
                os.path.join(os.path.dirname(str(body["path"])), sample), "sample parameters"
            ))  # fmt: skip
        try:
            job = self.manager.start(str(body.get("action", "compile")), notebook, outdir, options)
        except ValueError as error:
            raise tornado.web.HTTPError(409, str(error)) from None
        self.answer(job.view(), status=202)


class JobHandler(_Base):
    """GET polls a job (?since=N: events from N on); DELETE cancels it."""

    def _job(self, job_id: str) -> Any:
        job = self.manager.jobs.get(job_id)
        if job is None:
            raise tornado.web.HTTPError(404, f"no job {job_id}")
        return job

    @tornado.web.authenticated
    def get(self, job_id: str) -> None:
        since = int(self.get_query_argument("since", "0") or 0)
        self.answer(self._job(job_id).view(max(0, since)))

    @tornado.web.authenticated
    def delete(self, job_id: str) -> None:
        job = self._job(job_id)
        self.manager.cancel(job)
        self.answer(job.view(len(job.events)), status=202)


class LogHandler(JobHandler):
    """GET a job's log: what the worker and the notebook printed."""

    @tornado.web.authenticated
    def get(self, job_id: str) -> None:
        job = self._job(job_id)
        with job.lock:
            self.answer({"id": job.id, "log": list(job.log)})


_FILES = {
    "python": "text/x-python",
    "yaml": "application/yaml",
    "report_html": "text/html",
    "report_md": "text/markdown",
    "dataflow": "application/json",
}


class FileHandler(JupyterHandler):
    """GET one file a job wrote, by its key: output folders are often hidden (`.kale/`),
    which Jupyter's contents API refuses to serve, and only files a job named are served.
    Not an APIHandler: that one answers JSON only."""

    @tornado.web.authenticated
    def get(self, job_id: str, key: str) -> None:
        job = self.settings["kale_trace_jobs"].jobs.get(job_id)
        if job is None:
            raise tornado.web.HTTPError(404, f"no job {job_id}")
        result = job.view()["result"] or {}
        if key not in _FILES or not result.get(key):
            raise tornado.web.HTTPError(404, f"job {job_id} wrote no {key}")
        try:
            text = Path(result[key]).read_text(encoding="utf-8")
        except OSError as error:
            raise tornado.web.HTTPError(410, f"{result[key]}: {error.strerror}") from None
        self.set_header("Content-Type", f"{_FILES[key]}; charset=utf-8")
        self.set_header(
            "Content-Security-Policy",
            "default-src 'none'; style-src 'unsafe-inline'; img-src data:",
        )
        self.finish(text)


class ConfigHandler(_Base):
    """What the panel may show of the server's KFP setup: the host, never a credential."""

    @tornado.web.authenticated
    def get(self) -> None:
        env = os.environ
        self.answer({
            "kfp_host": env.get("KF_PIPELINES_ENDPOINT", ""),
            "kfp_namespace": env.get("KF_PIPELINES_NAMESPACE", ""),
            "has_token": bool(env.get("KF_PIPELINES_TOKEN")),
            "has_cookies": bool(env.get("KF_PIPELINES_COOKIES")),
            "root": str(self.manager.root),
        })  # fmt: skip


def setup_handlers(web_app: Any, root: Path) -> JobManager:
    """Register the handlers and the job manager on the server's web application."""
    manager = JobManager(root)
    web_app.settings["kale_trace_jobs"] = manager
    base = url_path_join(web_app.settings["base_url"], "kale-trace")
    web_app.add_handlers(
        ".*$",
        [
            (url_path_join(base, "jobs"), JobsHandler),
            (url_path_join(base, "jobs", r"(?P<job_id>[0-9a-f]+)"), JobHandler),
            (url_path_join(base, "jobs", r"(?P<job_id>[0-9a-f]+)", "log"), LogHandler),
            (
                url_path_join(base, "jobs", r"(?P<job_id>[0-9a-f]+)", "files", r"(?P<key>\w+)"),
                FileHandler,
            ),
            (url_path_join(base, "config"), ConfigHandler),
        ],
    )
    return manager
