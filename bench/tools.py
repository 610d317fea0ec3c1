"""Native benchmark tools: a private nginx (a fast upstream that is never the bottleneck) and
``wrk`` (a load generator written in C), so a benchmark measures the connector, not its helpers.

API (all of it)::

    ensure_tools()                       # nginx and wrk present, else apt-get install, else ToolError
    with nginx(server_snippet, files={"page.json": b"..."}, http="", modules=("echo",),
               access_log=False) as n:   # n.url, n.port, n.prefix, n.pid, n.cpu_seconds()
        result = wrk(n.url + "/x", method="POST", body=b"{}", headers={...},
                     connections=16, threads=1, seconds=5)
        result.rps, result.requests, result.errors, result.latency_ms[99], result.cpu_seconds
    cpu_seconds(pid)                     # user+system CPU of a process and all its descendants
    machine_cpu()                        # (busy, total) CPU seconds of the whole machine so far

``nginx()`` writes ``server_snippet`` inside ``server { listen 127.0.0.1:<free port>; ... }``
(``http`` goes into ``http {}`` before it) and runs nginx in the foreground (``daemon off``,
master process, one worker) with every path (prefix, error log, pid file, temp dirs) in a
temporary folder, whose path is ``n.prefix``; ``files`` are written there first, and relative
paths in the config resolve against it, so ``root .;`` serves them. nginx answers POST to a
static file with 405; ``error_page 405 =200 $uri;`` serves the file instead (a canned JSON
answer to any POST, as the action-path benchmark does). ``modules=("echo",)`` loads Debian's
``ngx_http_echo_module`` (``echo``, ``echo_sleep`` for a slow upstream). A config error raises
:class:`ToolError` with nginx's own message.

``wrk()`` drives one URL for ``seconds`` with ``connections`` keep-alive connections through a
generated Lua script (method, body, headers) and reads its figures back exactly from the
script's ``done()`` hook: requests, errors (socket errors and non-2xx/3xx answers), requests/s,
latency percentiles in ms (50, 75, 90, 99, 99.9) and the CPU seconds wrk itself used.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.processes import stop

from .common import free_port, wait_for_port

NGINX = "/usr/sbin/nginx"
WRK = "/usr/bin/wrk"
ECHO_MODULE = "/usr/lib/nginx/modules/ngx_http_echo_module.so"
MODULES = {"echo": ECHO_MODULE}
PACKAGES = ["nginx-light", "libnginx-mod-http-echo", "wrk"]


class ToolError(RuntimeError):
    """A native tool is missing or would not start; the message says how to fix it."""


def ensure_tools() -> None:
    """Make sure nginx, its echo module and wrk are installed (Debian packages
    ``nginx-light``, ``libnginx-mod-http-echo``, ``wrk``), installing them with apt-get if not."""
    missing = [p for p in (NGINX, WRK, ECHO_MODULE) if not os.path.exists(p)]
    if not missing:
        return
    apt = shutil.which("apt-get")
    hint = f"install them with: apt-get install -y {' '.join(PACKAGES)}"
    if apt is None:
        raise ToolError(f"the benchmark needs {', '.join(missing)} and this machine has no apt-get; {hint} "
                        "(or the equivalent nginx with the echo module, and wrk)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = [apt, "install", "-y", "-qq", *PACKAGES]
    run = subprocess.run(install, env=env, capture_output=True, text=True)
    if run.returncode != 0:   # a stale package list: refresh it once and retry
        subprocess.run([apt, "update", "-qq"], env=env, capture_output=True, text=True)
        run = subprocess.run(install, env=env, capture_output=True, text=True)
    still = [p for p in (NGINX, WRK, ECHO_MODULE) if not os.path.exists(p)]
    if run.returncode != 0 or still:
        raise ToolError(f"could not install {', '.join(PACKAGES)} with apt-get "
                        f"({(run.stderr or run.stdout).strip()[-500:]}); {hint}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by ``pid`` and every live descendant of it
    (a gunicorn or nginx master with its workers); 0 for a process that is gone."""
    ticks = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, float]] = {}   # pid -> (parent pid, CPU seconds)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2:].split()   # after "pid (comm) "; comm may hold spaces
        stats[int(entry)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / ticks)
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        if current in stats:
            total += stats[current][1]
        todo.extend(child for child, (parent, _) in stats.items() if parent == current)
    return total


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, all cores, from /proc/stat:
    the difference of two readings says how busy the machine was in between."""
    with open("/proc/stat") as stat:
        fields = [int(x) for x in stat.readline().split()[1:9]]   # guest time is already in user
    ticks = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + fields[4]
    return (sum(fields) - idle) / ticks, sum(fields) / ticks


@dataclass
class Nginx:
    """A running private nginx: see :func:`nginx`."""

    port: int
    prefix: Path
    pid: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cpu_seconds(self) -> float:
        """CPU seconds used so far by the master and its worker."""
        return cpu_seconds(self.pid)


@contextmanager
def nginx(server: str, *, http: str = "", files: dict[str, bytes | str] | None = None,
          modules: tuple[str, ...] = (), access_log: bool = False):
    """Run a private nginx serving ``server`` (directives inside ``server {}``); see the module
    docstring. Yields an :class:`Nginx`; stopped (and its folder removed) on exit."""
    ensure_tools()
    with tempfile.TemporaryDirectory(prefix="bench-nginx-") as tmp:
        prefix = Path(tmp)
        prefix.chmod(0o755)   # workers may run as another user when started by root
        for name, content in (files or {}).items():
            path = prefix / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content.encode() if isinstance(content, str) else content)
            path.chmod(0o644)
        port = free_port()
        loads = "".join(f"load_module {MODULES[m]};\n" for m in modules)
        temps = "".join(f"    {kind}_temp_path {prefix}/{kind}_temp;\n"
                        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        user = "user root;\n" if os.geteuid() == 0 else ""
        log = f"access_log {prefix}/access.log;" if access_log else "access_log off;"
        conf = (f"{loads}{user}daemon off;\nmaster_process on;\nworker_processes 1;\n"
                f"pid {prefix}/nginx.pid;\nerror_log {prefix}/error.log warn;\n"
                "events { worker_connections 4096; }\n"
                f"http {{\n    {log}\n{temps}    keepalive_requests 1000000;\n    {http}\n"
                f"    server {{\n        listen 127.0.0.1:{port} backlog=4096;\n{server}\n    }}\n}}\n")
        (prefix / "nginx.conf").write_text(conf)
        error_log = prefix / "error.log"
        proc = subprocess.Popen([NGINX, "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-e", str(error_log)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 15
            while True:
                if proc.poll() is not None:
                    detail = (proc.stderr.read().decode(errors="replace")
                              + (error_log.read_text(errors="replace") if error_log.exists() else ""))
                    raise ToolError(f"nginx would not start: {detail.strip()[-1000:]}")
                try:
                    wait_for_port(port, timeout=0.2)
                    break
                except RuntimeError:
                    if time.monotonic() > deadline:
                        raise ToolError(f"nginx did not listen on 127.0.0.1:{port} within 15 s") from None
            yield Nginx(port=port, prefix=prefix, pid=proc.pid)
        finally:
            if proc.poll() is None:
                stop(proc, 10)
            proc.stderr.close()


@dataclass
class WrkResult:
    """What one wrk run measured (latencies in ms)."""

    requests: int
    errors: int
    seconds: float
    latency_ms: dict[float, float] = field(default_factory=dict)
    mean_ms: float = 0.0
    cpu_seconds: float = 0.0

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def p50(self) -> float:
        return self.latency_ms[50]

    @property
    def p99(self) -> float:
        return self.latency_ms[99]


_PERCENTILES = (50, 75, 90, 99, 99.9)

_LUA = """
wrk.method = {method}
wrk.body = {body}
{headers}
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("BENCH-WRK %d %d %d %d %d %d %d %.3f", summary.requests, summary.duration,
    e.connect, e.read, e.write, e.status, e.timeout, latency.mean))
  for _, p in ipairs({{{percentiles}}}) do
    io.write(string.format(" %.3f", latency:percentile(p)))
  end
  io.write("\\n")
end
"""


def _lua_string(value: str) -> str:
    return "[==[" + value + "]==]"   # a Lua long string: no escaping needed


def wrk(url: str, *, method: str = "GET", body: bytes | str | None = None, headers: dict[str, str] | None = None,
        connections: int = 16, threads: int = 1, seconds: float = 5.0, timeout: float = 30.0) -> WrkResult:
    """Load ``url`` with wrk for ``seconds``; see the module docstring."""
    ensure_tools()
    text = body.decode() if isinstance(body, bytes) else (body or "")
    header_lines = "\n".join(f"wrk.headers[ {_lua_string(k)} ] = {_lua_string(v)}" for k, v in (headers or {}).items())
    if text and not any(k.lower() == "content-type" for k in headers or {}):
        header_lines += '\nwrk.headers["Content-Type"] = "application/json"'
    script = _LUA.format(method=_lua_string(method), body=_lua_string(text) if text else "nil",
                         headers=header_lines, percentiles=", ".join(str(p) for p in _PERCENTILES))
    with tempfile.NamedTemporaryFile("w", suffix=".lua", prefix="bench-wrk-") as lua:
        lua.write(script)
        lua.flush()
        args = [WRK, "--latency", "-t", str(max(1, min(threads, connections))), "-c", str(connections),
                "-d", f"{max(1, round(seconds))}s", "--timeout", f"{max(1, round(timeout))}s", "-s", lua.name, url]
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        with proc.stdout:
            out = proc.stdout.read().decode(errors="replace")
        _, status, usage = os.wait4(proc.pid, 0)   # not proc.wait(): wait4 also reports wrk's CPU
        proc.returncode = os.waitstatus_to_exitcode(status)
    line = next((x for x in out.splitlines() if x.startswith("BENCH-WRK ")), None)
    if line is None:
        raise ToolError(f"wrk failed on {url}: {out.strip()[-500:]}")
    numbers = line.split()[1:]
    requests, duration_us, *errs = (int(x) for x in numbers[:7])
    mean_us, *points = (float(x) for x in numbers[7:])
    return WrkResult(requests=requests, errors=sum(errs), seconds=duration_us / 1e6,
                     latency_ms={p: v / 1000 for p, v in zip(_PERCENTILES, points)}, mean_ms=mean_us / 1000,
                     cpu_seconds=usage.ru_utime + usage.ru_stime)
