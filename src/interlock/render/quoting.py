"""The one quote-or-reject helper for values printed into proxy configuration.

Templates may print only `Token` values and integers: the renderer's Jinja2 `finalize` hook
refuses anything else, so a template cannot print a raw string by mistake. Tokens are made here:

* `user_token`: values that came from labels. Already checked by the label grammars; checked
  again here against a narrower alphabet that nginx reads as one plain word (no spaces, `;`,
  braces, quotes, `#`, `$` or backslash), so nothing a label says can become a directive or a
  variable.
* `operator_string`: values from the operator's config file that may hold spaces or nginx
  variables (log formats, the server info header); printed single-quoted, quotes and
  backslashes refused.
* `operator_line`: GlobalOptions / HTTPOptions / TCPOptions, inserted verbatim by design, one
  line each.

Pure; render layer.
"""

from __future__ import annotations

import re

from jinja2 import Undefined
from markupsafe import Markup

from interlock.errors import UnsafeValue

_USER_WORD = re.compile(r"^[A-Za-z0-9._~/:@+=,*-]+$")
_OPERATOR_STRING = re.compile(r"^[^'\\\x00-\x1f\x7f]*$")
_OPERATOR_WORD = re.compile(r"^[A-Za-z0-9._/:!+@-]+$")


class Token(Markup):
    """A string that is safe to print into configuration as it is.

    A `Markup` subclass, so nothing ever escapes it; any plain string that reaches the output is
    stopped by `finalize`.
    """

    __slots__ = ()

    def __new__(cls, value: object = "") -> Token:
        # Skips Markup's __html__/encoding handling: tokens are always made from plain text.
        return str.__new__(cls, value)


def user_token(value: object) -> Token:
    """A label-derived value as one bare nginx word, or UnsafeValue."""
    text = str(value)
    if not _USER_WORD.fullmatch(text):
        raise UnsafeValue(f"refusing to print {text!r}: only A-Z a-z 0-9 . _ ~ / : @ + = , * - may come from labels")
    return Token(text)


def operator_string(value: object) -> Token:
    """An operator-supplied value: a bare word when it is one, else single-quoted.

    Quotes, backslashes and control characters are refused.
    """
    text = str(value)
    if _OPERATOR_WORD.fullmatch(text):
        return Token(text)
    if not _OPERATOR_STRING.fullmatch(text):
        raise UnsafeValue(f"refusing to print {text!r}: quotes, backslashes and control characters are not allowed")
    return Token(f"'{text}'")


def operator_line(value: object) -> Token:
    """A raw directive line from the operator's config, or UnsafeValue for a multi-line value."""
    text = str(value)
    if any(ch in text for ch in "\r\n\x00"):
        raise UnsafeValue(f"refusing to print {text!r}: raw option lines must be a single line")
    return Token(text.strip())


def finalize(value: object) -> object:
    """Jinja2 `finalize`: only tokens and integers may be printed. Jinja2's own Markup (what
    `|safe`, `|e`, `|forceescape` and `|tojson` return) is not a token: HTML escaping
    is no quoting for a proxy configuration, so it is refused like any raw value."""
    if isinstance(value, Token):
        return value
    if isinstance(value, Markup):
        raise UnsafeValue(
            f"template tried to print {str(value)[:80]!r} through a filter that marks it safe for HTML "
            "(|safe, |e, |forceescape, |tojson); that is no quoting for a proxy configuration"
        )
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, Undefined):
        # Let it explain itself (a missing name, or an attribute the sandbox refused).
        str(value)
    raise UnsafeValue(f"template tried to print an unquoted value {value!r}; pass it through a quoting filter")
