"""The JupyterLab server the Galata tests drive (root, a fixed port, no network)."""

from jupyterlab.galata import configure_jupyter_server

configure_jupyter_server(c)  # noqa: F821 - `c` is the config object jupyter gives this file
c.ServerApp.allow_root = True  # noqa: F821 - CI runs as root
c.ServerApp.ip = "127.0.0.1"  # noqa: F821
c.ServerApp.port = 8888  # noqa: F821
c.LabApp.news_url = None  # noqa: F821
c.ServerApp.jpserver_extensions = {"kale_trace.lab": True}  # noqa: F821
