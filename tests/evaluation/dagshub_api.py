"""A loopback stand-in for the two DagsHub API calls ``dagshub.init`` makes (who owns the token,
does the repository exist), so the dagshub library itself runs in tests without the network."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType


class DagshubStandIn:
    def __init__(self, owner: str, repo: str, login: str, token: str) -> None:
        self.owner, self.repo, self.login, self.token = owner, repo, login, token
        self.requests: list[tuple[str, str]] = []  # (path, Authorization header)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def _user(self) -> dict:
        return {
            "id": 1, "login": self.login, "username": self.login, "full_name": self.login,
            "avatar_url": None, "public_email": None, "website": None, "company": None,
            "description": None,
        }  # fmt: skip

    def _repo(self) -> dict:
        return {
            "id": 1, "owner": self._user(), "name": self.repo,
            "full_name": f"{self.owner}/{self.repo}", "description": "", "private": False,
            "fork": False, "parent": None, "empty": False, "mirror": False, "size": 0,
            "html_url": f"{self.url}/{self.owner}/{self.repo}", "ssh_url": None,
            "clone_url": f"{self.url}/{self.owner}/{self.repo}.git", "website": None,
            "stars_count": 0, "forks_count": 0, "watchers_count": 0, "open_issues_count": 0,
            "default_branch": "main", "created_at": "2026-01-01T00:00:00Z",
            "updated_at": "2026-01-01T00:00:00Z", "permissions": None,
        }  # fmt: skip

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                auth = self.headers.get("Authorization", "")
                stand_in.requests.append((self.path.split("?")[0], auth))
                path = self.path.split("?")[0].rstrip("/")
                if auth != f"Bearer {stand_in.token}":
                    self._answer(401, {"message": "bad token"})
                elif path == "/api/v1/user":
                    self._answer(200, stand_in._user())
                elif path == f"/api/v1/repos/{stand_in.owner}/{stand_in.repo}":
                    self._answer(200, stand_in._repo())
                else:
                    self._answer(404, {"message": "not found"})

            def _answer(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:  # keep the test output quiet
                pass

        return Handler

    def __enter__(self) -> DagshubStandIn:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
