"""Text on its way out of kale-trace: credentials redacted, terminal controls neutralised.

Every console line, error message and log file goes through `redact` (credentials the user
gave us, wherever they appear: a server echoing our headers, a URL in an error); what is
printed to the terminal also goes through `printable`, because a notebook controls much of
what we print (step names, file names, exception text) and an escape sequence in it must not
retitle the window, clear the screen or hide lines.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from urllib.parse import quote, unquote, urlsplit, urlunsplit

MASK = "***"
MIN_SECRET = 4  # shorter values would mask ordinary words; a real token is never this short

# Credentials the user passed (options, environment, URL userinfo, token files).
_secrets: set[str] = set()

# Header-shaped credentials, whoever sent them: `Authorization: Bearer x`, `"Cookie": "a=b"`.
_HEADER = re.compile(
    r"(?i)\b(authorization|proxy-authorization|cookie|set-cookie|x-api-key|x-auth-token)"
    r"(\"?'?\s*[:=]\s*\"?'?)([^\"'\r\n,}\]]+)"
)
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=*-]{8,}")
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@]*):([^@\s/]+)@")
_QUERY_SECRET = re.compile(
    r"(?i)([?&;](?:[a-z0-9_.-]*token|access_token|password|passwd|secret|api_?key|key|sig|"
    r"signature|code|[a-z0-9_.-]*session)=)([^&\s\"'#]+)"
)
# C0 controls except tab and newline, DEL, C1 controls, and the bidirectional overrides
# that reorder what a reader sees ("Trojan source").
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")

ENV_SECRETS = ("KF_PIPELINES_TOKEN", "KF_PIPELINES_COOKIES")
SA_TOKEN_PATH = "KF_PIPELINES_SA_TOKEN_PATH"


def add_secret(value: str | None) -> None:
    """Never show this value (and its URL-encoded and decoded spellings) in any output."""
    if not value:
        return
    for spelling in {value, value.strip(), quote(value, safe=""), unquote(value)}:
        if len(spelling) >= MIN_SECRET:
            _secrets.add(spelling)


def add_cookies(header: str | None) -> None:
    """A Cookie header: the whole header and each cookie's value are secrets."""
    if not header:
        return
    add_secret(header)
    for part in header.split(";"):
        add_secret(part.partition("=")[2].strip())


def add_url(url: str | None) -> None:
    """A URL's password (userinfo) and query-string values are secrets."""
    if not url:
        return
    parts = urlsplit(url if "://" in url else f"//{url}")
    if parts.password:
        add_secret(parts.password)
    elif parts.username:  # https://TOKEN@host: a token passed as the user name
        add_secret(parts.username)
    for pair in parts.query.split("&"):
        add_secret(pair.partition("=")[2])


def add_environment(environ: Mapping[str, str] = os.environ) -> None:
    """Credentials kfp reads from the environment, and the service-account token file."""
    add_secret(environ.get("KF_PIPELINES_TOKEN"))
    add_cookies(environ.get("KF_PIPELINES_COOKIES"))
    token_file = environ.get(SA_TOKEN_PATH)
    if token_file:
        try:
            with open(token_file, encoding="utf-8", errors="replace") as handle:
                add_secret(handle.read(65536).strip())
        except OSError:
            pass  # kfp will say it cannot read it; nothing of it can leak


def public_url(url: str) -> str:
    """The URL as shown to users: userinfo and query-string values masked."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        host = netloc.rpartition("@")[2]
        netloc = f"{parts.username}:{MASK}@{host}" if parts.password else f"{MASK}@{host}"
    query = "&".join(
        f"{key}={MASK}" if sep else key
        for key, sep, _ in (pair.partition("=") for pair in parts.query.split("&") if pair)
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact(text: str) -> str:
    """`text` without any credential we know of, nor header- or URL-shaped ones."""
    for secret in sorted(_secrets, key=len, reverse=True):
        text = text.replace(secret, MASK)
    text = _HEADER.sub(lambda m: f"{m[1]}{m[2]}{MASK}", text)
    text = _BEARER.sub(lambda m: f"{m[1]} {MASK}", text)
    text = _USERINFO.sub(lambda m: f"{m[1]}:{MASK}@", text)
    return _QUERY_SECRET.sub(lambda m: f"{m[1]}{MASK}", text)


def printable(text: str) -> str:
    """Terminal control characters shown as escapes (`\\x1b`); tabs and newlines kept."""
    text = text.replace("\r\n", "\n")
    return _CONTROL.sub(lambda m: m[0].encode("unicode_escape").decode("ascii"), text)


def for_terminal(text: str) -> str:
    """What the CLI prints: redacted, then neutralised."""
    return printable(redact(text))


def forget_secrets() -> None:
    """Tests: start from no known secrets."""
    _secrets.clear()
