"""Credentials out of everything dptune prints or stores.

A URL may carry a password as `scheme://user:pass@host` (a tracking or registry URI, a Kubeflow
host, an artifact store). `redact_uri` hides it in one URI and `redact_text` in every URL of a
text (an error line, a traceback, a tag); `without_userinfo` is the address to connect to.
"""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit, urlunsplit

HIDDEN = "***"
# scheme://user:password@ : the password is what is hidden (up to the last @ before the host).
_USERINFO = re.compile(
    r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^\s/?#@:]*):(?P<password>[^\s/?#]*)@"
)


def redact_text(text: str) -> str:
    """`text` with the password of every `scheme://user:pass@` URL in it replaced by ***."""
    if "@" not in text:
        return text
    return _USERINFO.sub(lambda m: f"{m['head']}:{HIDDEN}@", text)


def redact_uri(uri: str) -> str:
    """`uri` with the password of its user info replaced by ***; other URIs unchanged."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return redact_text(uri)
    if "@" not in parts.netloc:
        return uri
    userinfo, _, host = parts.netloc.rpartition("@")
    user, has_password, _ = userinfo.partition(":")
    netloc = f"{user}:{HIDDEN}@{host}" if has_password else f"{user}@{host}"
    return urlunsplit(parts._replace(netloc=netloc))


def credentials(uri: str) -> tuple[str, str] | None:
    """(user, password) of a `user:pass@` URI, else None."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return None
    if parts.username is None or parts.password is None:
        return None
    return unquote(parts.username), unquote(parts.password)


def without_userinfo(uri: str) -> str:
    """`uri` without its `user[:pass]@` part (the address to connect to)."""
    parts = urlsplit(uri)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
