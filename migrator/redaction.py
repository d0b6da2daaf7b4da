"""Passwords never leave the process: every database URL is shown with its password masked.

A target URL may carry a password (`postgresql://user:pw@host/db`, or `?password=pw`). Every
message, report, traceback and sign-off renders URLs through `mask_url` or `mask_secrets`; the
drivers' own messages and tracebacks go through `mask_secrets` with the passwords of the URLs
in play, so an echo of the password in any form (a libpq DSN, a dict of connection arguments)
is masked too. A URL never needs a password: see README, "Passwords".
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, unquote, urlsplit

MASK = "***"
PASSWORD_KEYS = ("password", "passwd")  # libpq's and playhouse's name; pymysql's
"""Names under which a URL's query or a driver's DSN passes a password."""

# scheme://user:PASSWORD@ — the password ends at the last "@" before the host, as urlsplit reads it.
_URL_PASSWORD = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/?#@'\"]*:)(?P<secret>[^\s/?#'\"]*)@")
# password=VALUE in a URL query or a libpq DSN (`password='a b'` quotes a value with spaces), also
# sslpassword=; a value masked already is left as it is.
_KEY_PASSWORD = re.compile(
    rf"(?P<head>(?:{'|'.join(PASSWORD_KEYS)})=)(?!\*\*\*)(?P<secret>'(?:[^'\\]|\\.)*'|[^\s&'\"]+)", re.IGNORECASE
)


def url_secrets(url: str) -> set[str]:
    """The passwords a URL carries, as written and percent-decoded; none for a path."""
    if "://" not in url:
        return set()
    try:
        parts = urlsplit(url)
        found = [parts.password or ""]
    except ValueError:  # a malformed URL (a bad port): fall back to the pattern alone
        parts, found = None, []
    found += [match.group("secret") for match in _URL_PASSWORD.finditer(url)]
    if parts is not None:
        found += [value for key, value in parse_qsl(parts.query) if key.lower() in PASSWORD_KEYS]
    return {variant for secret in found if secret for variant in (secret, unquote(secret))}


def mask_url(url: str) -> str:
    """`url` with its password replaced by ***: `postgresql://postgres:***@host:5432/db`."""
    return mask_secrets(url, url_secrets(url))


def mask_secrets(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with every URL's password and every `password=` value masked, and each of `secrets`
    masked wherever it appears (a driver may echo a password in any form)."""
    text = _URL_PASSWORD.sub(lambda match: f"{match.group('head')}{MASK}@", text)
    text = _KEY_PASSWORD.sub(lambda match: f"{match.group('head')}{MASK}", text)
    for secret in sorted(set(secrets), key=len, reverse=True):  # longest first: one may contain another
        if secret and secret != MASK:
            text = text.replace(secret, MASK)
    return text


def secrets_of(values: Iterable[object]) -> set[str]:
    """The passwords of every URL among `values` (command-line arguments, options)."""
    return {secret for value in values if isinstance(value, str) for secret in url_secrets(value)}
