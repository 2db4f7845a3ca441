"""A fake Hugging Face Hub on 127.0.0.1 for tests: enough of the file API for huggingface_hub.

It serves checkpoint folders under Hub repo ids (``openai-community/gpt2`` -> a seeded
folder) and answers exactly what ``snapshot_download`` and ``hf_hub_download`` ask
(see /work/shared/notes/hub-serve-facts.md):

* ``GET /api/models/{repo}[/revision/{rev}]`` -> ``{"id", "sha", "siblings"}``
* ``GET /api/models/{repo}/tree/{commit}`` -> ``[{"type": "file", "path", "size", "oid"}]``
* ``HEAD``/``GET /{repo}/resolve/{rev}/{file}`` with ``X-Repo-Commit``, ``ETag`` and
  ``Content-Length``, byte ranges (``Range: bytes=N-``) answered 206 so downloads resume;
  a missing file 404 with ``X-Error-Code: EntryNotFound``, an unknown repo ``RepoNotFound``.

Dataset repositories (``add_dataset``: relative paths, folders included, -> bytes) are served
the same way under ``/datasets/{repo}/resolve/...`` and ``/api/datasets/{repo}/...``. What
``datasets.load_dataset(repo, config, split=...)`` asks (datasets 5.2.0, huggingface_hub 1.33.0;
read in datasets/load.py, then seen in this server's log): HEAD and GET ``README.md`` at main
(its YAML ``configs:`` name each config's data files; the commit comes from X-Repo-Commit); HEAD
``{name}.py`` at that commit (a loading script: 404 expected, datasets 4+ refuses scripts); GET
``/api/datasets/{repo}/revision/{commit}``; HEAD ``.huggingface.yaml``; GET
``/api/datasets/{repo}/tree/{commit}/{config folder}`` and ``.../tree/{commit}``; HEAD
``dataset_infos.json``; HEAD and GET each data file. ``POST /api/datasets/{repo}/paths-info/{rev}``
(huggingface_hub's file system asking what a path is) is answered too. Besides the endpoint,
datasets asks two other hosts, neither needed: a HEAD to a download counter on S3 (off with
HF_UPDATE_DOWNLOAD_COUNTS=0) and the dataset viewer's ``/info`` at ``datasets-server.`` + the
endpoint's host (its failure is tolerated).

Every request is recorded in ``requests`` (method, path), so a test can say "no request".
Faults, for tests of what a client does with a bad download:

* ``truncate[file] = n``: the file *is* its first n bytes (size, ETag and body all agree),
  like a broken upload: the client gets a complete, consistent, corrupt file.
* ``cut_once[file] = n``: the next GET announces the whole file but sends n bytes and drops
  the connection, like a network failure; later GETs (resumed with a Range) are whole.

Nothing here reaches any other host. Use it as a context manager::

    with HubServer({"openai-community/gpt2": folder}) as hub:
        snapshot_download("openai-community/gpt2", endpoint=hub.url, cache_dir=...)
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit


def git_blob_sha(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def free_port() -> int:
    """A port nothing listens on (for "the server is down")."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class HubServer:
    def __init__(self, repos: dict[str, str | Path | dict[str, bytes]]) -> None:
        self.repos: dict[str, dict[str, bytes]] = {}
        self.datasets: dict[str, dict[str, bytes]] = {}
        for repo_id, src in repos.items():
            self.add(repo_id, src)
        self.requests: list[tuple[str, str]] = []
        self.truncate: dict[str, int] = {}
        self.cut_once: dict[str, int] = {}
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def add(self, repo_id: str, src: str | Path | dict[str, bytes]) -> None:
        if isinstance(src, dict):
            files = dict(src)
        else:
            files = {p.name: p.read_bytes() for p in sorted(Path(src).iterdir()) if p.is_file()}
        self.repos[repo_id] = files

    def add_dataset(self, repo_id: str, files: dict[str, bytes]) -> None:
        """A dataset repository: {"README.md": ..., "config/test-00000-of-00001.parquet": ...}."""
        self.datasets[repo_id] = dict(files)

    # ----------------------------------------------------------------- what is served

    def files(self, repo_id: str) -> dict[str, bytes]:
        out = {}
        for name, data in self.repos[repo_id].items():
            n = self.truncate.get(name)
            out[name] = data[:n] if n is not None else data
        return out

    def commit(self, repo_id: str) -> str:
        h = hashlib.sha1(repo_id.encode())
        for name, data in sorted(self.files(repo_id).items()):
            h.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
        return h.hexdigest()

    @property
    def url(self) -> str:
        assert self._httpd is not None, "start the server first"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def count(self, method: str | None = None) -> int:
        with self._lock:
            return sum(1 for m, _ in self.requests if method is None or m == method)

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> "HubServer":
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_HEAD(self):
                server._handle(self, head=True)

            def do_GET(self):
                server._handle(self, head=False)

            def do_POST(self):
                server._handle(self, head=False)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> "HubServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ----------------------------------------------------------------- requests

    def _send(self, h, status: int, body: bytes = b"", headers: dict | None = None,
              head: bool = False, content_type: str = "application/json") -> None:
        h.send_response(status)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        if not head:
            h.wfile.write(body)

    def _error(self, h, status: int, code: str, message: str, head: bool) -> None:
        body = json.dumps({"error": message}).encode()
        self._send(h, status, body, {"X-Error-Code": code, "X-Error-Message": message}, head)

    def _repo_and_rest(self, parts: list[str]) -> tuple[str | None, list[str]]:
        """The longest known repo id at the start of ``parts`` (ids have one slash, or none)."""
        for n in (2, 1):
            if len(parts) >= n and "/".join(parts[:n]) in self.repos:
                return "/".join(parts[:n]), parts[n:]
        return None, parts

    def _handle(self, h, head: bool) -> None:
        path = unquote(urlsplit(h.path).path)
        with self._lock:
            self.requests.append((h.command, path))
        parts = [p for p in path.split("/") if p]
        try:
            if parts[:2] == ["api", "datasets"] or parts[:1] == ["datasets"]:
                return self._dataset(h, parts, head)
            if parts[:2] == ["api", "models"]:
                return self._api(h, parts[2:], head)
            repo, rest = self._repo_and_rest(parts)
            if repo is None or len(rest) < 3 or rest[0] != "resolve":
                what = "/".join(parts[:2])
                return self._error(h, 404, "RepoNotFound", f"Repository {what} not found", head)
            return self._resolve(h, repo, rest[1], "/".join(rest[2:]), head)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _api(self, h, parts: list[str], head: bool) -> None:
        repo, rest = self._repo_and_rest(parts)
        if repo is None:
            return self._error(h, 404, "RepoNotFound", f"Repository {'/'.join(parts)} not found", head)
        commit = self.commit(repo)
        files = self.files(repo)
        if not rest or rest[0] == "revision":
            rev = rest[1] if len(rest) > 1 else "main"
            if rev not in ("main", commit):
                return self._error(h, 404, "RevisionNotFound", f"Invalid rev id: {rev}", head)
            body = {"id": repo, "modelId": repo, "sha": commit, "private": False,
                    "siblings": [{"rfilename": n} for n in sorted(files)]}
            return self._send(h, 200, json.dumps(body).encode(), head=head)
        if rest[0] == "tree":
            body = [{"type": "file", "path": n, "size": len(d), "oid": git_blob_sha(d)}
                    for n, d in sorted(files.items())]
            return self._send(h, 200, json.dumps(body).encode(), head=head)
        return self._error(h, 404, "EntryNotFound", "not served by this fake Hub", head)

    def _resolve(self, h, repo: str, rev: str, name: str, head: bool) -> None:
        commit = self.commit(repo)
        if rev not in ("main", commit):
            return self._error(h, 404, "RevisionNotFound", f"Invalid rev id: {rev}", head)
        files = self.files(repo)
        if name not in files:
            return self._error(h, 404, "EntryNotFound", f"{name} does not exist", head)
        data = files[name]
        headers = {"X-Repo-Commit": commit, "ETag": f'"{git_blob_sha(data)}"',
                   "Accept-Ranges": "bytes"}
        start = 0
        m = re.fullmatch(r"bytes=(\d+)-", h.headers.get("Range") or "")
        if m and not head:
            start = min(int(m.group(1)), len(data))
        if head:
            return self._send(h, 200, data, headers, head=True, content_type="application/octet-stream")
        body = data[start:]
        status = 206 if start else 200
        if start:
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        with self._lock:
            cut = self.cut_once.pop(name, None)
        if cut is None:
            return self._send(h, status, body, headers, content_type="application/octet-stream")
        # announce the whole body, send part of it, drop the connection
        h.send_response(status)
        h.send_header("Content-Type", "application/octet-stream")
        h.send_header("Content-Length", str(len(body)))
        for k, v in headers.items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(body[:cut])
        h.wfile.flush()
        h.close_connection = True
        try:
            h.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # ----------------------------------------------------------------- dataset repositories

    def _dataset(self, h, parts: list[str], head: bool) -> None:
        api = parts[0] == "api"
        rest = parts[2:] if api else parts[1:]
        repo = next(("/".join(rest[:n]) for n in (2, 1) if "/".join(rest[:n]) in self.datasets), None)
        if repo is None:
            if h.command == "POST":
                h.rfile.read(int(h.headers.get("Content-Length") or 0))
            return self._error(h, 404, "RepoNotFound", f"Dataset {'/'.join(rest[:2])} not found", head)
        rest = rest[repo.count("/") + 1:]
        files = self.datasets[repo]
        commit = hashlib.sha1(("dataset:" + repo).encode() + b"".join(
            n.encode() + hashlib.sha256(d).digest() for n, d in sorted(files.items()))).hexdigest()
        if not api:  # /datasets/{repo}/resolve/{rev}/{path}
            if len(rest) < 3 or rest[0] != "resolve":
                return self._error(h, 404, "EntryNotFound", "not served by this fake Hub", head)
            return self._serve_file(h, files, commit, rest[1], "/".join(rest[2:]), head)
        if rest[:1] == ["paths-info"]:
            form = h.rfile.read(int(h.headers.get("Content-Length") or 0)).decode()
            from urllib.parse import parse_qs
            asked = parse_qs(form).get("paths", [])
            body = [self._entry(n, files, folder=n not in files) for n in asked
                    if n in files or any(f.startswith(n.rstrip("/") + "/") for f in files)]
            return self._send(h, 200, json.dumps(body).encode(), head=head)
        if not rest or rest[0] == "revision":
            body = {"id": repo, "sha": commit, "private": False, "gated": False, "disabled": False,
                    "siblings": [{"rfilename": n} for n in sorted(files)], "cardData": {}}
            return self._send(h, 200, json.dumps(body).encode(), head=head)
        if rest[0] == "tree":
            folder = "/".join(rest[2:]).strip("/")
            recursive = "recursive=true" in (urlsplit(h.path).query or "").lower()
            names = sorted(n for n in files if not folder or n.startswith(folder + "/"))
            entries, seen = [], set()
            for n in names:
                inner = n[len(folder) + 1:] if folder else n
                pieces = inner.split("/")
                for depth in range(1, len(pieces)):  # the folders on the way
                    sub = "/".join(([folder] if folder else []) + pieces[:depth])
                    if sub not in seen and (recursive or depth == 1):
                        seen.add(sub)
                        entries.append(self._entry(sub, files, folder=True))
                if recursive or len(pieces) == 1:
                    entries.append(self._entry(n, files))
            return self._send(h, 200, json.dumps(entries).encode(), head=head)
        return self._error(h, 404, "EntryNotFound", "not served by this fake Hub", head)

    @staticmethod
    def _entry(name: str, files: dict[str, bytes], folder: bool = False) -> dict:
        if folder:
            return {"type": "directory", "path": name.rstrip("/"), "oid": git_blob_sha(name.encode())}
        return {"type": "file", "path": name, "size": len(files[name]), "oid": git_blob_sha(files[name])}

    def _serve_file(self, h, files: dict[str, bytes], commit: str, rev: str, name: str, head: bool) -> None:
        if rev not in ("main", commit):
            return self._error(h, 404, "RevisionNotFound", f"Invalid rev id: {rev}", head)
        if name not in files:
            return self._error(h, 404, "EntryNotFound", f"{name} does not exist", head)
        data = files[name]
        headers = {"X-Repo-Commit": commit, "ETag": f'"{git_blob_sha(data)}"', "Accept-Ranges": "bytes"}
        m = re.fullmatch(r"bytes=(\d+)-(\d*)", h.headers.get("Range") or "")
        if m and not head:
            start = min(int(m.group(1)), len(data))
            stop = min(int(m.group(2)) + 1, len(data)) if m.group(2) else len(data)
            headers["Content-Range"] = f"bytes {start}-{max(stop - 1, start)}/{len(data)}"
            return self._send(h, 206, data[start:stop], headers, content_type="application/octet-stream")
        return self._send(h, 200, data, headers, head=head, content_type="application/octet-stream")
