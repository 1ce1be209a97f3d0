"""Scenario 1's reference: nginx in front of the canvas service, `auth_request` to the auth service.

nginx cannot sign our HMAC credential, so every request makes an `auth_request` subrequest to the
auth service's forward-auth endpoint, which checks the Bearer token and answers with the signed
credential in `X-Internal-Auth`; nginx forwards it to the canvas service (`auth_request_set` +
`proxy_set_header`). Keep-alive pools to both upstreams; no caching of the auth answer. nginx runs
in the foreground from a config in the run's work folder.
"""

from __future__ import annotations

from pathlib import Path

from devtools.processes import Process
from devtools.redis_server import free_port

CONFIG = """
worker_processes {workers};
daemon off;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {root}/tmp/body;
    proxy_temp_path {root}/tmp/proxy;
    fastcgi_temp_path {root}/tmp/fastcgi;
    uwsgi_temp_path {root}/tmp/uwsgi;
    scgi_temp_path {root}/tmp/scgi;

    upstream canvas {{ server 127.0.0.1:{canvas_port}; keepalive 128; }}
    upstream auth {{ server 127.0.0.1:{auth_port}; keepalive 128; }}

    server {{
        listen 127.0.0.1:{port};

        location = /nginx-health {{ return 200 "ok"; }}

        location = /_forward_auth {{
            internal;
            proxy_pass http://auth{forward_auth_path};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-URI $request_uri;
            proxy_set_header X-Request-Id $request_id;
        }}

        location /api/ {{
            auth_request /_forward_auth;
            auth_request_set $internal_auth $upstream_http_x_internal_auth;
            proxy_pass http://canvas;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Authorization "";
            proxy_set_header Cookie "";
            proxy_set_header X-Internal-Auth $internal_auth;
            proxy_set_header X-Request-Id $request_id;
        }}
    }}
}}
"""


class Nginx:
    def __init__(
        self,
        binary: str,
        root: Path,
        *,
        auth_port: int,
        canvas_port: int,
        forward_auth_path: str,
        workers: str,
    ) -> None:
        self.root = root
        self.port = free_port()
        (root / "tmp").mkdir(parents=True, exist_ok=True)
        self.config = root / "nginx.conf"
        self.config.write_text(
            CONFIG.format(
                root=root,
                port=self.port,
                auth_port=auth_port,
                canvas_port=canvas_port,
                forward_auth_path=forward_auth_path,
                workers=workers,
            )
        )
        cmd = [binary, "-p", str(root), "-c", str(self.config)]
        self.process = Process("nginx", cmd, {}, root / "nginx.log", f"{self.url}/nginx-health")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process.proc is not None
        return self.process.proc.pid

    def start(self) -> Nginx:
        self.process.start(30)
        return self

    def stop(self) -> None:
        self.process.stop(10)
