"""Credentials out of anything stored, logged or shown: one function, `redact`, for URLs and free text.

A user may put an API key where a URL goes (`http://user:KEY@host/v1`, `https://host/v1?api_key=KEY`);
the request needs it, but job records, label-run records, log lines and error messages must not hold it.
`redact` masks, in every URL inside a text (a URL alone, a command line, a log line, an error message),
the userinfo (`http://***@host/v1`) and the values of query parameters that carry keys
(`?api_key=***`); it also masks bearer tokens (`Bearer ***`) and basic-auth credentials. Everything
else is kept as written, and redacting twice changes nothing. Apply it where text leaves the process
that holds the key, not where the key is used: the real request keeps the real URL.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
from urllib.parse import unquote, urlsplit, urlunsplit

MASK = "***"
# Query parameters whose value is a credential (compared case-insensitively, `-` read as `_`).
SECRET_PARAMS = frozenset(
    {
        "api_key",
        "apikey",
        "key",
        "token",
        "access_token",
        "auth",
        "auth_token",
        "authorization",
        "bearer",
        "client_secret",
        "id_token",
        "password",
        "passwd",
        "private_token",
        "refresh_token",
        "secret",
        "sig",
        "signature",
        "x_api_key",
        "x_goog_api_key",
    }
)
_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>`]+")
_BEARER = re.compile(r"(\bBearer\s+)(?!\*\*\*)[^\s'\",]+")
_BASIC = re.compile(r"(\bBasic\s+)([A-Za-z0-9+/]{4,}={0,2})")


def redact(text: str) -> str:
    """`text` with credentials masked: inside its URLs (userinfo, key parameters), bearer tokens and
    basic-auth credentials (base64 of `user:password`)."""
    text = _URL.sub(lambda m: _redact_url(m.group(0)), text)
    text = _BEARER.sub(rf"\g<1>{MASK}", text)
    return _BASIC.sub(_redact_basic, text)


def url_secrets(url: str) -> list[str]:
    """The credentials written into `url`: its userinfo password (or lone user), key parameter values,
    and the basic-auth token made of its userinfo. A client scrubs these from text a server echoes."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    found = []
    if "@" in parts.netloc:
        userinfo = unquote(parts.netloc.rpartition("@")[0])
        user, _, password = userinfo.partition(":")
        found += [password or user, base64.b64encode(f"{user}:{password}".encode()).decode()]
    for pair in parts.query.split("&"):
        name, sep, value = pair.partition("=")
        if sep and value and name.strip().lower().replace("-", "_") in SECRET_PARAMS:
            found.append(unquote(value))
    return [s for s in found if s]


def redact_args(args: list[str] | tuple[str, ...]) -> list[str]:
    """A command line's arguments, each redacted (for records of what was run)."""
    return [redact(a) for a in args]


class RedactingFilter(logging.Filter):
    """A logging filter that redacts each record's message (install it on the handlers that write)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


def _redact_basic(match: re.Match[str]) -> str:
    """Mask `Basic <token>` when the token is base64 of `user:password` (not the word "Basic" in prose)."""
    try:
        decoded = base64.b64decode(match.group(2), validate=True)
    except (binascii.Error, ValueError):
        return match.group(0)
    return f"{match.group(1)}{MASK}" if b":" in decoded else match.group(0)


def _redact_url(url: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. a malformed IPv6 host: mask what looks like userinfo, keep the rest
        return re.sub(r"(://)[^/@]*@", rf"\g<1>{MASK}@", url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@{netloc.rpartition('@')[2]}"
    query = _redact_query(parts.query)
    if netloc == parts.netloc and query == parts.query:
        return url  # untouched: keep the exact spelling
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def _redact_query(query: str) -> str:
    if not query:
        return query
    pairs = []
    for pair in query.split("&"):
        name, sep, value = pair.partition("=")
        if sep and value != MASK and name.strip().lower().replace("-", "_") in SECRET_PARAMS:
            pair = f"{name}={MASK}"
        pairs.append(pair)
    return "&".join(pairs)


__all__ = ["MASK", "SECRET_PARAMS", "RedactingFilter", "redact", "redact_args", "url_secrets"]
