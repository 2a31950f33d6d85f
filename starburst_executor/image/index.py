"""The package index pip downloads the wheelhouse from: which one, and whether it answers.

pip retries an unreachable index with no output (five times per request, 15 s or more each, and
180 s when ``PIP_DEFAULT_TIMEOUT`` says so), then reports the pin as "not found".  So before a
download, :func:`check_indexes` asks each HTTP index pip is configured with for one response,
within seconds, and raises :class:`~starburst_executor.errors.ImageError` naming the index when
there is none; :data:`PIP_NETWORK_ARGS` bound pip's own waits for the requests that follow.
"""

from __future__ import annotations

import base64
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence

from ..errors import ImageError

__all__ = ["PIP_NETWORK_ARGS", "DEFAULT_INDEX", "pip_settings", "index_urls", "check_indexes",
           "network_failure", "redact"]

DEFAULT_INDEX = "https://pypi.org/simple"
# A socket timeout and one retry: a stalled request fails in well under a minute.
PIP_NETWORK_ARGS = ["--timeout", "15", "--retries", "1"]
PROBE_TIMEOUT = 10.0

# What pip prints when a request fails for the network rather than for a missing wheel.
_NETWORK_SIGNS = ("Retrying (Retry(", "NewConnectionError", "ConnectTimeoutError", "ProxyError",
                  "ReadTimeoutError", "Max retries exceeded", "Failed to establish a new connection")


def pip_settings() -> dict[str, str]:
    """pip's settings (``pip config list``: files and ``PIP_*`` variables), keyed as pip names
    them: ``global.index-url``, ``download.proxy``, ``:env:.index-url``..."""
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", "config", "list"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    settings: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            settings[key.strip()] = value.strip().strip("'\"")
    return settings


def _setting(settings: Mapping[str, str], name: str) -> str | None:
    # pip's precedence: a variable over a file, the command's section over [global].
    for section in (":env:", "download", "global"):
        value = settings.get(f"{section}.{name}")
        if value is not None:
            return value
    return None


def index_urls(settings: Mapping[str, str]) -> list[str]:
    """The HTTP(S) indexes pip will ask, main one first; none with ``no-index``.  Local
    (``file:``) indexes are not listed: they cannot hang."""
    if (_setting(settings, "no-index") or "").lower() in ("1", "true", "yes", "on"):
        return []
    urls = [_setting(settings, "index-url") or DEFAULT_INDEX]
    urls += (_setting(settings, "extra-index-url") or "").split()
    return [u for u in urls if u.lower().startswith(("http://", "https://"))]


def redact(url: str) -> str:
    """``url`` with its password replaced, fit for a message."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def _request(url: str) -> urllib.request.Request:
    """A HEAD request of ``url``, its credentials moved into a header (urllib takes them for
    part of the host name)."""
    parts = urllib.parse.urlsplit(url)
    headers = {"User-Agent": "starburst-executor (index check)"}
    if parts.username is not None:
        host = parts.hostname or ""
        netloc = host + (f":{parts.port}" if parts.port else "")
        url = urllib.parse.urlunsplit(parts._replace(netloc=netloc))
        token = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
        headers["Authorization"] = "Basic " + base64.b64encode(token.encode()).decode()
    return urllib.request.Request(url.rstrip("/") + "/", method="HEAD", headers=headers)


def _probe(url: str, proxy: str | None, timeout: float) -> str | None:
    """None when ``url`` answers with anything but a proxy's or server's failure, else why not."""
    handlers = [urllib.request.ProxyHandler({"http": proxy, "https": proxy})] if proxy else []
    opener = urllib.request.build_opener(*handlers)
    try:
        with opener.open(_request(url), timeout=timeout):
            return None
    except urllib.error.HTTPError as exc:
        # Any answer of the index itself will do (a 404 or 405 to HEAD included); a proxy that
        # cannot get through says 407, 502, 503 or 504.
        if exc.code == 407 or exc.code >= 500:
            return f"HTTP {exc.code} {exc.reason}"
        return None
    except urllib.error.URLError as exc:
        return str(exc.reason)
    except (TimeoutError, OSError) as exc:
        return str(exc) or type(exc).__name__


def check_indexes(
    urls: Sequence[str], settings: Mapping[str, str], timeout: float = PROBE_TIMEOUT
) -> None:
    """Raise ImageError naming the first of ``urls`` that gives no answer within ``timeout``.

    The proxy is pip's (``proxy`` setting), else the ``HTTPS_PROXY``/``HTTP_PROXY`` variables,
    as pip would use them.
    """
    proxy = _setting(settings, "proxy")
    for url in urls:
        why = _probe(url, proxy, timeout)
        if why is None:
            continue
        via = f" through the proxy {redact(proxy)}" if proxy else _env_proxy(url)
        raise ImageError(
            f"the package index {redact(url)} cannot be reached{via}: {why}. The wheelhouse of "
            "the image is downloaded from it. Point pip at an index you can reach "
            "(PIP_INDEX_URL, or `pip config set global.index-url URL`), fix the proxy "
            "(HTTPS_PROXY), or put the wheels in the wheel cache by hand."
        )


def _env_proxy(url: str) -> str:
    scheme = urllib.parse.urlsplit(url).scheme
    proxy = urllib.request.getproxies().get(scheme)
    if proxy and not urllib.request.proxy_bypass(urllib.parse.urlsplit(url).hostname or ""):
        return f" through the proxy {redact(proxy)}"
    return ""


def network_failure(output: str) -> bool:
    """Whether pip's ``output`` shows a request that failed for the network."""
    return any(sign in output for sign in _NETWORK_SIGNS)

