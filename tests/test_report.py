"""The type report: HTML checked in a real headless Chromium, Markdown parsed, diffs, errors.

Chromium is driven over the DevTools protocol with websocket-client (no browser download,
no webdriver): console errors, exceptions and JavaScript dialogs are all collected.
Run this file as a script to refresh docs/report.png from the bundled example.
"""

from __future__ import annotations

import base64
import html
import json
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import EXAMPLE, ROOT, write_notebook
from markdown_it import MarkdownIt

from kale_trace.cli import main
from kale_trace.compiler import CompileOptions, compile_notebook
from kale_trace.report import diff, from_dict, load_report, render, render_diff
from kale_trace.report.mermaid import flowchart

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(1)>'

HOSTILE_CELLS = [
    ("imports", "import numpy as np\nimport pandas as pd"),
    ("parameters", f"title = {SCRIPT!r}\nrows = 4"),
    ("step:load", f"df = pd.DataFrame({{{IMG!r}: range(rows), {SCRIPT!r}: [0.5] * rows}})"),
    (["step:features", "prev:load"], "arr = df.to_numpy()\nlabel = title.upper()"),
    # reads `arr` from a step no prev: tag orders it after: a warning
    (["step:train", "prev:load"], "total = float(arr.sum()) + len(label)"),
    (["step:summary", "prev:train"], "summary = f'{title}: {total}'"),
]


# --- headless Chromium over the DevTools protocol -------------------------------------------


class Chromium:
    """One headless Chromium with a fresh profile, one page, every console error kept."""

    def __init__(self, profile: Path) -> None:
        import websocket  # websocket-client, pinned in the test extra

        profile.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--hide-scrollbars", f"--user-data-dir={profile}",
             "--remote-debugging-port=0", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.close()
                raise RuntimeError("chromium did not start")
            time.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as answer:
            targets = json.load(answer)
        page = next(t for t in targets if t["type"] == "page")
        self.ws = websocket.create_connection(
            page["webSocketDebuggerUrl"], timeout=30, suppress_origin=True
        )
        self.next_id = 0
        self.events: list[dict[str, Any]] = []
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable")

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def wait_for(self, method: str, seconds: float = 30) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if any(e.get("method") == method for e in self.events):
                return
            self.events.append(json.loads(self.ws.recv()))
        raise TimeoutError(method)

    def open(self, path: Path, width: int, height: int, mobile: bool = False) -> None:
        self.call(
            "Emulation.setDeviceMetricsOverride",
            width=width, height=height, deviceScaleFactor=2 if mobile else 1, mobile=mobile,
        )  # fmt: skip
        self.events.clear()
        self.call("Page.navigate", url=path.resolve().as_uri())
        self.wait_for("Page.loadEventFired")

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(result["exceptionDetails"])
        return result["result"].get("value")

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions, log errors (CSP, failed loads) and dialogs."""
        found = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
                found.append(f"console: {params['args']}")
            elif method == "Runtime.exceptionThrown":
                found.append(f"exception: {params['exceptionDetails']}")
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                found.append(f"log: {params['entry']['text']}")
            elif method == "Page.javascriptDialogOpening":
                found.append(f"dialog: {params['message']}")
        return found

    def screenshot(self, path: Path, full_page: bool = True) -> Path:
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            width, height = self.evaluate(
                "[document.documentElement.scrollWidth, document.documentElement.scrollHeight]"
            )
            params.update(
                captureBeyondViewport=True,
                clip={"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
            )
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", **params)["data"]))
        return path

    def close(self) -> None:
        if getattr(self, "ws", None) is not None:
            self.ws.close()
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


_DOM_FACTS = """(() => ({
  scripts: document.querySelectorAll('script').length,
  images: document.querySelectorAll('img, iframe, object, embed').length,
  handlers: [...document.querySelectorAll('*')].filter(
      e => [...e.attributes].some(a => a.name.toLowerCase().startsWith('on'))).length,
  external: [...document.querySelectorAll('[src], link[href]')].length,
  steps: [...document.querySelectorAll('svg.dag g.node')].map(g => g.dataset.step),
  links: [...document.querySelectorAll('svg.dag g.edge')].map(g => [g.dataset.from, g.dataset.to]),
  edgeRows: [...document.querySelectorAll('#edges tr[data-edge]')].map(r => r.dataset.edge),
  svg: (() => { const b = document.querySelector('svg.dag').getBoundingClientRect();
                return [b.width, b.height]; })(),
  warnings: document.querySelector('#warnings').innerText,
  parameters: document.querySelector('#parameters').innerText,
  columns: [...document.querySelectorAll('#edges ul.cols li')].map(li => li.textContent),
  pageWidth: document.documentElement.scrollWidth,
  viewport: window.innerWidth,
}))()"""


# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A really traced and compiled notebook whose names and values are HTML attacks."""
    folder = tmp_path_factory.mktemp("hostile")
    path = write_notebook(folder / "hostile.ipynb", HOSTILE_CELLS)
    options = CompileOptions(overrides={}, samples={"title": IMG, "rows": 3})
    compile_notebook(path, folder / "out", options)
    return folder / "out"


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory):
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed: apt-get install -y chromium (see .ci/run)")
    chromium = Chromium(tmp_path_factory.mktemp("chromium-profile"))
    yield chromium
    chromium.close()


def _markdown() -> MarkdownIt:
    return MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])


class _Tags(HTMLParser):
    """Every start tag of an HTML document, and its text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _tags(document: str) -> _Tags:
    parser = _Tags()
    parser.feed(document)
    return parser


def _no_markup_from_notebook(document: str) -> str:
    """Assert no active or loading element made it in; return the document's text."""
    parsed = _tags(document)
    names = {tag for tag, _ in parsed.tags}
    assert not names & {"script", "img", "iframe", "object", "embed", "link"}, names
    assert not [a for _, attrs in parsed.tags for a in attrs if a.lower().startswith("on")]
    return "".join(parsed.text)


# --- the compiled report in a real browser ------------------------------------------------


def test_compiled_report_renders_in_chromium(hostile: Path, browser: Chromium, tmp_path: Path):
    data = json.loads((hostile / "dataflow.json").read_text(encoding="utf-8"))
    steps = [s["name"] for s in data["steps"]]
    edges = {f"{i['from']}|{s['name']}|{i['name']}" for s in data["steps"] for i in s["inputs"]}
    assert {"load|features|df", "features|train|arr", "features|train|label"} <= edges
    assert data["warnings"], "the notebook was built to raise a warning"

    browser.open(hostile / "report.html", 1280, 900)
    facts = browser.evaluate(_DOM_FACTS)
    shot = browser.screenshot(tmp_path / "report-wide.png")
    assert browser.errors() == []
    assert facts["scripts"] == facts["images"] == facts["handlers"] == facts["external"] == 0
    assert facts["steps"] == steps
    assert set(facts["edgeRows"]) == edges
    pairs = {tuple(e.split("|")[:2]) for e in edges}
    assert pairs <= {tuple(link) for link in facts["links"]}
    assert facts["svg"][0] > 100 and facts["svg"][1] > 100
    assert "train" in facts["warnings"] and "arr" in facts["warnings"]
    assert SCRIPT in facts["parameters"] and IMG in facts["parameters"]  # default and sample
    assert f"{IMG}: int64" in facts["columns"] and f"{SCRIPT}: float64" in facts["columns"]
    assert shot.stat().st_size > 10_000 and shot.read_bytes()[:4] == b"\x89PNG"

    browser.open(hostile / "report.html", 390, 844, mobile=True)  # a phone
    phone = browser.evaluate(_DOM_FACTS)
    browser.screenshot(tmp_path / "report-phone.png")
    assert browser.errors() == []
    assert phone["pageWidth"] <= phone["viewport"] + 1, "the page scrolls sideways on a phone"
    assert 0 < phone["svg"][0] <= phone["viewport"]


def test_markdown_parses_and_its_mermaid_names_every_step(hostile: Path):
    text = (hostile / "report.md").read_text(encoding="utf-8")
    report = load_report(hostile / "dataflow.json")
    tokens = _markdown().parse(text)
    fences = [t for t in tokens if t.type == "fence" and t.info == "mermaid"]
    assert len(fences) == 1
    graph = fences[0].content
    for step in report.steps:
        assert re.search(rf'^\s+s\d+\["{re.escape(step.display_name)}"\]$', graph, re.M)
    assert graph.count("-->") + graph.count("-.->") == len(report.links())
    tables = [t for t in tokens if t.type == "table_open"]
    assert len(tables) == 3  # parameters, edges, steps
    rendered = _markdown().render(text)
    page = html.unescape(_no_markup_from_notebook(rendered))
    assert SCRIPT in page and IMG in page
    for edge in report.edges:
        assert edge.variable in page and edge.type in page


def test_reports_are_deterministic_and_rebuild_from_dataflow_json(hostile: Path, tmp_path: Path):
    runner = CliRunner()
    for fmt, name in (("html", "report.html"), ("md", "report.md")):
        out = tmp_path / f"again.{fmt}"
        result = runner.invoke(main, ["report", str(hostile / "dataflow.json"), "-o", str(out)])
        assert result.exit_code == 0, result.output
        assert out.read_bytes() == (hostile / name).read_bytes()
    result = runner.invoke(main, ["report", str(hostile / "dataflow.json"), "--format", "json"])
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert {e["variable"] for e in data["edges"]} >= {"df", "arr", "label", "total"}


# --- hostile strings everywhere a dataflow.json can carry them ------------------------------


def _hostile_dataflow() -> dict[str, Any]:
    value = {"type": SCRIPT, "marshaller": IMG, "source": "trace", "dtype": "`|*_",
             "columns": [[IMG, SCRIPT], ["a|b\nc", "```"]], "shape": [2, 2],
             "size_bytes": 64}  # fmt: skip
    return {
        "pipeline": f"p{SCRIPT}",
        "notebook": IMG,
        "traced": True,
        "parameters": [{"name": "x", "type": "str", "default": SCRIPT, "sample": "a\n```\n#"}],
        "steps": [
            {
                "name": "a",
                "display_name": IMG,
                "after": [],
                "inputs": [],
                "outputs": [{**value, "name": SCRIPT}],
            },
            {
                "name": "b",
                "display_name": 'end"] --> x["' + SCRIPT,
                "after": ["a"],
                "inputs": [{**value, "name": SCRIPT, "from": "a"}],
                "outputs": [],
            },
        ],  # fmt: skip
        "warnings": [{"step": "b", "variable": IMG, "message": f"{SCRIPT} **bold** [x](y)"}],
    }


def test_hostile_dataflow_renders_as_text_in_every_format():
    report = from_dict(_hostile_dataflow())
    page = _no_markup_from_notebook(render(report, "html"))
    assert SCRIPT in page and IMG in page and "```" in page

    markdown = render(report, "md")
    graph = flowchart(report)
    lines = graph.splitlines()
    nodes = [re.fullmatch(r'    s\d+\["([^"<>`]*)"\]', line) for line in lines[1:3]]
    assert all(nodes), lines
    decode = lambda label: re.sub(r"#(\d+);", lambda m: chr(int(m[1])), label)  # noqa: E731
    assert [decode(m[1]) for m in nodes] == [IMG, 'end"] --> x["' + SCRIPT]
    assert re.fullmatch(r'    s0 -->\|"[^"<>`]*"\| s1', lines[3]), lines[3]
    assert decode(lines[3].split('"')[1]) == SCRIPT
    tokens = _markdown().parse(markdown)
    fences = [t for t in tokens if t.type == "fence"]
    assert [t.info for t in fences] == ["mermaid"] and fences[0].content.strip() == graph
    rendered = _markdown().render(markdown)
    text = html.unescape(_no_markup_from_notebook(rendered))
    assert SCRIPT in text and IMG in text and "**bold** [x](y)" in text
    assert "<strong>bold</strong>" not in rendered and "<a " not in rendered
    assert json.loads(render(report, "json"))["pipeline"] == f"p{SCRIPT}"


def test_diff_shows_hostile_changes_as_text():
    old = from_dict(_hostile_dataflow())
    changed = _hostile_dataflow()
    changed["steps"][1]["inputs"][0]["type"] = IMG
    changed["warnings"].append({"step": "a", "variable": "", "message": IMG})
    new = from_dict(changed)
    page = _no_markup_from_notebook(render_diff(diff(old, new, SCRIPT, IMG), "html"))
    assert SCRIPT in page and IMG in page
    rendered = _markdown().render(render_diff(diff(old, new, SCRIPT, IMG), "md"))
    text = html.unescape(_no_markup_from_notebook(rendered))
    assert f"type {SCRIPT} {IMG}" in " ".join(text.split())


# --- diff of two real versions of one notebook --------------------------------------------

V1 = [
    ("imports", "import numpy as np\nimport pandas as pd"),
    ("parameters", "rows = 50"),
    ("step:load", "df = pd.DataFrame({'a': np.arange(rows), 'b': np.ones(rows)})"),
    (["step:prepare", "prev:load"], "X = df[['a', 'b']].to_numpy()\nlabels = list(df['a'])"),
    (["step:fit", "prev:prepare"], "weights = X.mean(axis=0)\nn = len(labels)"),
]
V2 = [
    ("imports", "import numpy as np\nimport pandas as pd"),
    ("parameters", "rows = 50\nscale = 2.0"),
    (
        "step:load",
        "df = pd.DataFrame({'a': np.arange(rows), 'b': np.ones(rows) * scale, "
        "'c': np.zeros(rows, dtype='int32')})",
    ),  # fmt: skip
    (["step:prepare", "prev:load"], "X = df[['a', 'b', 'c']].to_numpy(dtype='float32')"),
    (["step:fit", "prev:prepare"], "weights = X.mean(axis=0)\nn = len(df)"),
    # reads X from prepare with no prev: tag: a new warning
    (["step:score", "prev:load"], "score = float((X @ np.ones(3)).sum())"),
]


def test_diff_of_two_versions_of_a_notebook(tmp_path: Path, browser: Chromium):
    options = CompileOptions(overrides={}, samples={})
    compile_notebook(write_notebook(tmp_path / "nb.ipynb", V1), tmp_path / "v1", options)
    compile_notebook(write_notebook(tmp_path / "nb.ipynb", V2), tmp_path / "v2", options)
    old_json, new_json = tmp_path / "v1" / "dataflow.json", tmp_path / "v2" / "dataflow.json"
    runner = CliRunner()
    for name in ("diff.md", "diff.html", "diff.json"):
        args = ["report", str(new_json), "--against", str(old_json), "-o", str(tmp_path / name)]
        result = runner.invoke(main, args)
        assert result.exit_code == 0, result.output

    text = (tmp_path / "diff.md").read_text(encoding="utf-8")
    assert any(t.type == "table_open" for t in _markdown().parse(text))
    rendered = " ".join(html.unescape(_no_markup_from_notebook(_markdown().render(text))).split())
    assert "1 new warning" in rendered and "score" in rendered
    assert rendered.index("new warning") < rendered.index("Edges changed")  # at the top
    assert "labels prepare → fit" in rendered  # removed: fit no longer reads labels
    assert "df load → fit" in rendered and "X prepare → score" in rendered  # added
    assert "X prepare → fit shape 50 × 2 50 × 3" in rendered
    assert "X prepare → fit dtype float64 float32" in rendered
    assert "df load → prepare columns 2 columns 3 columns (+c)" in rendered
    assert re.search(r"df load → prepare size [\d.]+ [KM]?i?B [\d.]+ [KM]?i?B \(\+\d+%\)", rendered)
    assert "steps added: score" in rendered and "1 added, 0 removed, 0 changed" in rendered

    changes = json.loads((tmp_path / "diff.json").read_text(encoding="utf-8"))
    assert {(e["from"], e["to"], e["name"]) for e in changes["edges_added"]} == {
        ("load", "fit", "df"), ("prepare", "score", "X")}  # fmt: skip
    assert [(e["from"], e["to"], e["name"]) for e in changes["edges_removed"]] == [
        ("prepare", "fit", "labels")]  # fmt: skip
    assert changes["steps_added"] == ["score"] and changes["parameters_added"] == ["scale"]
    assert [w["step"] for w in changes["new_warnings"]] == ["score"]

    browser.open(tmp_path / "diff.html", 1280, 900)
    facts = browser.evaluate(_DOM_FACTS)
    assert browser.errors() == []
    assert facts["scripts"] == facts["images"] == facts["handlers"] == 0
    assert set(facts["edgeRows"]) == {"load|fit|df", "prepare|score|X", "prepare|fit|labels"}
    assert "score" in facts["warnings"]
    same = render_diff(diff(load_report(old_json), load_report(old_json)), "md")
    assert "No change in the dataflow" in same and "Edges" not in same


def test_report_of_a_notebook_takes_the_compile_options(tmp_path: Path):
    path = write_notebook(tmp_path / "nb.ipynb", V1)
    args = ["report", str(path), "--no-trace", "-p", "rows", "7", "--format", "json"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["parameters"][0]["default"] == 7 and data["traced"] is False
    assert {(e["producer"], e["consumer"], e["variable"]) for e in data["edges"]} >= {
        ("load", "prepare", "df"), ("prepare", "fit", "X")}  # fmt: skip
    assert all(e["source"] == "ast" for e in data["edges"])


# --- errors a user can fix ------------------------------------------------------------------


def test_bad_dataflow_files_exit_1_with_the_file_and_the_fix(tmp_path: Path):
    runner = CliRunner()
    cases = {
        "broken.json": ("{ not json", "not valid JSON"),
        "other.json": ('{"cells": 1}', "not a kale-trace dataflow"),
        "cyclic.json": (json.dumps({"pipeline": "p", "steps": [
            {"name": "a", "after": ["b"]}, {"name": "b", "after": ["a"]}]}), "cycle"),
        "badtype.json": ('{"pipeline": "p", "steps": [{"name": 3}]}', "wrong type"),
    }  # fmt: skip
    for name, (content, message) in cases.items():
        path = tmp_path / name
        path.write_text(content, encoding="utf-8")
        result = runner.invoke(main, ["report", str(path)])
        assert result.exit_code == 1, (name, result.output)
        assert str(path) in result.stderr and message in result.stderr
        assert "fix:" in result.stderr and "Traceback" not in result.stderr
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"pipeline": "p", "steps": [{"name": "a"}]}), encoding="utf-8")
    usage = runner.invoke(main, ["report", str(good), "-p", "rows", "3"])
    assert usage.exit_code == 2 and "-p: these apply to a notebook" in usage.stderr
    notebook = write_notebook(tmp_path / "nb.ipynb", [("step:a", "x = 1")])
    against = runner.invoke(main, ["report", str(good), "--against", str(notebook)])
    assert against.exit_code == 1 and "is a notebook" in against.stderr


# --- docs/report.png ----------------------------------------------------------------------


def refresh_readme_screenshot() -> None:
    """Compile the bundled example and save the top of its report as docs/report.png."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "out"
        samples = {"n_estimators": 20}
        compile_notebook(EXAMPLE, out, CompileOptions(overrides={}, samples=samples))
        chromium = Chromium(Path(folder) / "profile")
        try:
            chromium.open(out / "report.html", 1100, 1480)
            assert chromium.errors() == []
            (ROOT / "docs").mkdir(exist_ok=True)
            chromium.screenshot(ROOT / "docs" / "report.png", full_page=False)
        finally:
            chromium.close()


if __name__ == "__main__":
    sys.exit(refresh_readme_screenshot())
