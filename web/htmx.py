"""Whether the current request came from htmx (its ``HX-Request`` header).

``web.app`` installs htmx_flask, whose request class adds ``request.htmx``; Flask's ``request``
is typed as the plain Request, hence the cast.
"""

from __future__ import annotations

from typing import cast

from flask import request
from htmx_flask.requests import HtmxAwareRequest


def is_htmx() -> bool:
    return bool(cast(HtmxAwareRequest, request).htmx)
