"""What every generated step uses to run its cells as Jupyter does and keep their outputs.

The code below the marker is emitted, as source, into each component (a KFP component is
one self-contained function); it is a real module so that it is linted and tested as code.
It must not use a name a notebook can bind: every name it needs is local or an attribute.
"""

from __future__ import annotations

import inspect

_MARKER = "# --- emitted into every step ---\n"


def cells_source() -> str:
    """The source of `_kale_Cells`, as emitted into a component."""
    import kale_trace.codegen.step_cells as module

    return inspect.getsource(module).split(_MARKER, 1)[1].strip()


# --- emitted into every step ---
class _kale_Cells:
    """Runs cells as Jupyter does and keeps each one's outputs as nbformat stores them.

    Through IPython's InteractiveShell where IPython is installed (magics, `!` commands,
    displays, the last expression's value, figures as PNG); as plain Python otherwise.
    Streams still reach the step's log; errors print the cell's own traceback.
    """

    def __init__(self, main, outputs_path):
        self.main, self.outputs_path = main, outputs_path
        self.outputs = {}  # notebook cell -> its outputs
        self.sources = {}
        self.current = None
        self.filename = "<cell>"
        self.shell = self._shell()

    def _shell(self):
        try:
            from IPython.core.displayhook import DisplayHook
            from IPython.core.displaypub import DisplayPublisher
            from IPython.core.interactiveshell import InteractiveShell
            from traitlets import Type
            from traitlets.config import Config
        except ImportError:
            return None
        cells = self

        class Hook(DisplayHook):  # the last expression's value: an execute_result
            def write_output_prompt(self):
                pass

            def write_format_data(self, format_dict, md_dict=None):
                cells.display("execute_result", format_dict, md_dict, self.prompt_count)

            def finish_displayhook(self):
                pass

        class Publisher(DisplayPublisher):  # display(), figures, %%capture's replay
            def publish(self, data, metadata=None, *args, **kw):
                cells.display("display_data", data, metadata)

            def clear_output(self, wait=False):
                if cells.current is not None:
                    cells.current.clear()

        class Shell(InteractiveShell):
            displayhook_class = Type(Hook)
            display_pub_class = Type(Publisher)

            def showtraceback(self, exc_tuple=None, *args, **kw):
                cells.error(*self._get_exc_info(exc_tuple))

            def init_completer(self):  # nobody types at a step: skip importing the completer
                self.Completer = None

            def showsyntaxerror(self, *args, **kw):
                import sys

                cells.error(*sys.exc_info())

        import os

        # As ipykernel does: pyplot draws with the inline backend, figures become PNG outputs.
        os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
        config = Config()
        config.HistoryManager.enabled = False  # no history database in a step
        shell = Shell.instance(config=config, user_module=self.main, user_ns=self.main.__dict__)
        shell.compile.get_code_name = lambda raw, code, number: cells.filename
        return shell

    def run(self, filename, code, cell=None, plain=None, needs_ipython=False, may_raise=False):
        """Run one cell; an error stops the step unless the cell is tagged raises-exception.

        `plain` is the cell as plain Python, for a step without IPython (None: `code` is).
        """
        self.filename, self.current = filename, None
        if cell is not None:
            self.current = self.outputs.setdefault(cell, [])
            self.sources[cell] = code
        if self.shell is None and needs_ipython:
            self.save()
            raise SystemExit(f"kale-trace: {filename} needs IPython (its magics): install ipython")
        with self._streams():
            if self.shell is not None:
                succeeded = self.shell.run_cell(code, store_history=True).success
            else:
                succeeded = self._exec(filename, code if plain is None else plain)
        self.current = None
        if not succeeded and not may_raise:
            self.save()  # the output notebook shows the error too
            raise SystemExit(f"{filename} failed")

    def _exec(self, filename, code):
        import linecache
        import sys

        # Register the source so the traceback shows the notebook's own lines.
        linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
        try:
            exec(compile(code, filename, "exec"), self.main.__dict__)
        except Exception:
            self.error(*sys.exc_info())
            return False
        return True

    def _streams(self):
        """stdout and stderr still reach the log, and are kept as stream outputs."""
        import contextlib
        import sys

        cells = self

        class Tee:
            def __init__(self, name, original):
                self.name, self.original = name, original

            def write(self, text):
                self.original.write(text)
                cells.stream(self.name, text)
                return len(text)

            def __getattr__(self, attribute):
                return getattr(self.original, attribute)

        @contextlib.contextmanager
        def teed():
            saved = sys.stdout, sys.stderr
            sys.stdout, sys.stderr = Tee("stdout", saved[0]), Tee("stderr", saved[1])
            try:
                yield
            finally:
                sys.stdout, sys.stderr = saved

        return teed()

    def stream(self, name, text):
        if self.current is None or not text:
            return
        last = self.current[-1] if self.current else None
        if last is not None and last["output_type"] == "stream" and last["name"] == name:
            last["text"] += text
        else:
            self.current.append({"output_type": "stream", "name": name, "text": text})

    def display(self, kind, data, metadata=None, count=None):
        """Keep a rich output; the step's log shows its text form."""
        import sys

        text = (data or {}).get("text/plain")
        if text:
            sys.__stdout__.write(f"{text}\n")
        if self.current is None:
            return
        output = {"output_type": kind, "data": dict(data or {}), "metadata": dict(metadata or {})}
        if kind == "execute_result":
            output["execution_count"] = count
        self.current.append(output)

    def error(self, kind, value, trace):
        """Print the cell's own traceback (from its first frame) and keep it as an error."""
        import sys
        import traceback

        while trace is not None and not trace.tb_frame.f_code.co_filename.startswith("<"):
            trace = trace.tb_next  # IPython's and this helper's frames
        lines = traceback.format_exception(kind, value, trace)
        sys.__stderr__.write("".join(lines))
        if self.current is not None:
            self.current.append(
                {
                    "output_type": "error",
                    "ename": getattr(kind, "__name__", str(kind)),
                    "evalue": str(value),
                    "traceback": [line.rstrip("\n") for line in lines],
                }
            )

    def save(self):
        """The outputs of every notebook cell this step ran, for the output notebook."""
        import json

        cells = [{"cell": index, "outputs": self.outputs[index]} for index in sorted(self.outputs)]
        with open(self.outputs_path, "w", encoding="utf-8") as file:
            json.dump({"cells": cells}, file, default=repr)

    def report(self, path, title, own, explicit):
        """The step's report: its own cells and their outputs, as HTML."""
        cells = [
            {"id": f"cell-{index}", "cell_type": "code", "metadata": {}, "execution_count": None,
             "source": self.sources.get(index, ""), "outputs": self.outputs.get(index, [])}
            for index in own
        ]  # fmt: skip
        notebook = {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": cells}
        shown = explicit or any(cell["outputs"] for cell in cells)
        with open(path, "w", encoding="utf-8") as file:
            file.write(_kale_report_html(notebook, title) if shown else _kale_page(title, ""))


def _kale_page(title, body):
    """A minimal HTML page: the report where nbconvert is not installed, or nothing shown."""
    import html

    body = body or "<p>This step displayed nothing.</p>"
    return (
        f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}"
        f"</title></head><body>{body}</body></html>\n"
    )


def _kale_report_html(notebook, title):
    """nbconvert's HTML of the cells, sanitised and without scripts; escaped text without it."""
    import html

    try:
        import nbformat
        from jinja2 import DictLoader
        from nbconvert import HTMLExporter
        from nbconvert.preprocessors.sanitize import SanitizeHTML
    except ImportError:
        texts = []
        for cell in notebook["cells"]:
            texts.append(cell["source"])
            for output in cell["outputs"]:
                texts.append(output.get("text") or output.get("data", {}).get("text/plain", ""))
        return _kale_page(title, "".join(f"<pre>{html.escape(text)}</pre>" for text in texts))
    node = nbformat.from_dict(notebook)
    tables = ["table", "thead", "tbody", "tfoot", "tr", "th", "td", "caption", "div", "span",
              "p", "pre", "br", "style", "h1", "h2", "h3", "h4", "sup", "sub", "hr"]  # fmt: skip
    sanitizer = SanitizeHTML(
        tags=sorted(set(SanitizeHTML().tags) | set(tables)),
        attributes={"*": ["class", "title", "colspan", "rowspan", "border", "halign", "valign"]},
    )
    node, _ = sanitizer.preprocess(node, {})
    template = (
        "{%- extends 'lab/index.html.j2' -%}\n"
        "{%- block html_head_js -%}{%- endblock html_head_js -%}\n"
        "{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}\n"
        "{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}\n"
        "{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}\n"
    )  # the lab template without its scripts: the KFP UI shows the report offline
    exporter = HTMLExporter(
        extra_loaders=[DictLoader({"kale_step.html.j2": template})],
        template_file="kale_step.html.j2",
    )
    resources = {"metadata": {"name": title}}  # the template escapes it
    return exporter.from_notebook_node(node, resources=resources)[0]
