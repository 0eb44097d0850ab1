"""A minimal npm registry on loopback, for tests that install with the real npm.

npm's install needs two requests from a registry: the packument (`GET /<name>`, the
package's versions, each with a tarball URL and its integrity) and the tarball itself.
This server answers exactly those for packages built in memory from a few files, so
`npm install --prefix P name@version` runs for real, offline, against a registry that
knows only what the test put in it. Scoped names arrive as `/@scope%2fname`.

    with NpmRegistry() as reg:
        reg.publish("fake-claude", "2.1.197", {"cli.js": "..."}, bin={"claude": "cli.js"})
        (home / ".npmrc").write_text(f"registry={reg.url}\\n")
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote


def _tarball(name: str, version: str, files: dict[str, str], bin: dict[str, str]) -> bytes:
    """npm's tarball layout: everything under `package/`, package.json included."""
    manifest = {"name": name, "version": version, "bin": bin}
    entries = {"package.json": json.dumps(manifest, indent=2), **files}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for path, text in entries.items():
            data = text.encode()
            info = tarfile.TarInfo("package/" + path)
            info.size = len(data)
            info.mode = 0o755 if path in bin.values() else 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class NpmRegistry:
    """A threaded HTTP server on 127.0.0.1 (a free port), stopped by close()."""

    def __init__(self) -> None:
        self.packages: dict[str, dict[str, dict]] = {}      # name -> version -> manifest
        self.tarballs: dict[str, bytes] = {}                # url path -> bytes
        self.requests: list[str] = []
        registry = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                registry.requests.append(self.path)
                path = unquote(self.path.split("?", 1)[0])
                if path in registry.tarballs:
                    self._send(200, registry.tarballs[path], "application/octet-stream")
                    return
                name = path.lstrip("/")
                versions = registry.packages.get(name)
                if versions is None:
                    self._send(404, b'{"error":"Not found"}', "application/json")
                    return
                latest = max(versions, key=lambda v: tuple(int(p) for p in v.split(".")))
                doc = {"name": name, "dist-tags": {"latest": latest}, "versions": versions}
                self._send(200, json.dumps(doc).encode(), "application/json")

            def _send(self, code: int, body: bytes, kind: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def publish(self, name: str, version: str, files: dict[str, str],
                bin: dict[str, str]) -> None:
        data = _tarball(name, version, files, bin)
        path = f"/{name}/-/{name.rsplit('/', 1)[-1]}-{version}.tgz"
        self.tarballs[path] = data
        integrity = "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()
        self.packages.setdefault(name, {})[version] = {
            "name": name, "version": version, "bin": bin,
            "dist": {"tarball": self.url.rstrip("/") + path,
                     "shasum": hashlib.sha1(data).hexdigest(), "integrity": integrity}}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> NpmRegistry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
