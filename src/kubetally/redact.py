"""URLs fit for messages: a password in the userinfo is never shown.

Used for every URL kubetally prints or logs — the ledger's ``--db`` URL, the Prometheus
``--prometheus`` URL — so ``http://admin:s3cret@prometheus:9090`` is shown as
``http://admin:***@prometheus:9090``. The user name stays (it helps an operator see which
account is used); a userinfo without ``:`` (no password) is left as it is.
"""

from __future__ import annotations

import re

#: ``user:password@`` at the start of what follows ``scheme://``, the password up to the first
#: ``@``; for passwords holding a raw ``/``, ``?`` or ``#`` (SQLAlchemy accepts them in DB URLs).
_LENIENT_USERINFO = re.compile(r"(?P<user>[^:/?#@]*):(?P<password>[^@]*)@")
#: ``host:port/path`` that only looks like ``user:password`` because the path holds an ``@``.
_PORT_THEN_PATH = re.compile(r"\d*[/?#]")


def redact_url(url: str) -> str:
    """``url`` with the userinfo password replaced by ``***`` (anything else unchanged)."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    # RFC 3986: the authority ends at the first "/", "?" or "#"; its userinfo at its last "@".
    end = min((i for i in (rest.find(c) for c in "/?#") if i != -1), default=len(rest))
    authority = rest[:end]
    if "@" in authority:
        userinfo, host = authority.rsplit("@", 1)
        if ":" not in userinfo:
            return url
        return f"{scheme}://{userinfo.split(':', 1)[0]}:***@{host}{rest[end:]}"
    lenient = _LENIENT_USERINFO.match(rest)
    if lenient is None or _PORT_THEN_PATH.match(lenient["password"]):
        return url
    return f"{scheme}://{lenient['user']}:***@{rest[lenient.end() :]}"


def redact_text(text: str, url: str) -> str:
    """``text`` (e.g. a library's error message) with every copy of ``url`` redacted."""
    shown = redact_url(url)
    return text.replace(url, shown) if shown != url else text
