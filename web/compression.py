"""gzip for large responses (no extra package: an ``after_request`` hook and the gzip module)."""

from __future__ import annotations

import gzip

from flask import Flask, Response, request

MIN_SIZE_BYTES = 1024
COMPRESS_LEVEL = 6
COMPRESSIBLE = ("text/", "application/json", "application/javascript", "image/svg+xml")


def init_app(app: Flask) -> None:
    @app.after_request
    def _gzip(response: Response) -> Response:
        if (
            "gzip" not in request.headers.get("Accept-Encoding", "").lower()
            or response.direct_passthrough
            or response.status_code < 200
            or response.status_code in (204, 304)
            or "Content-Encoding" in response.headers
            or not (response.mimetype or "").startswith(COMPRESSIBLE)
        ):
            return response
        body = response.get_data()
        if len(body) < MIN_SIZE_BYTES:
            return response
        response.set_data(gzip.compress(body, compresslevel=COMPRESS_LEVEL))
        response.headers["Content-Encoding"] = "gzip"
        response.vary.add("Accept-Encoding")
        return response
