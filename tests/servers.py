"""Real servers for logpipe's tests: memcached, Apache httpd and PostgreSQL from Debian packages.

Every server runs on a free 127.0.0.1 port, in a private temporary directory, and is stopped
for good: its whole process group is killed, and so is every process that still carries its
environment tag (see below). No mocks.

Units: every ``timeout``/``interval``/``grace`` argument is in seconds (float); ports are TCP
port numbers; memory sizes are in MiB.

Process tagging
---------------
Each server is started with the environment variable ``LOGPIPE_TEST_SERVER`` set to
``"<owner pid>:<owner start time>:<random id>"``. Everything the server spawns inherits it
(httpd's children, its piped loggers and *their* children, postgres backends), even a process
that calls ``setsid()`` and leaves the process group. ``stop()`` kills what is left with that
exact value; :func:`reap_orphans` kills tagged processes whose owning test run (the pid and
start time in the tag) no longer exists, so a crashed or SIGKILLed pytest run is cleaned up by
the next one without touching servers of other test runs on the same machine.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import glob
import http.client
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
import weakref
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence, TypeVar, Union

__all__ = [
    "LOOPBACK",
    "free_port",
    "port_open",
    "wait_for",
    "reap_orphans",
    "Memcached",
    "Apache",
    "Postgres",
    "MEMCACHED_BIN",
    "APACHE_BIN",
    "APACHE_MODULES_DIR",
    "postgres_bindir",
]

LOOPBACK = "127.0.0.1"
MEMCACHED_BIN = "/usr/bin/memcached"
APACHE_BIN = "/usr/sbin/apache2"
APACHE_MODULES_DIR = "/usr/lib/apache2/modules"
TAG_VAR = "LOGPIPE_TEST_SERVER"

T = TypeVar("T")


# --------------------------------------------------------------------------------------------
# small helpers


def free_port(host: str = LOOPBACK) -> int:
    """Return a TCP port on ``host`` that was free a moment ago (the kernel's choice for port 0).

    There is an unavoidable race with other processes; the servers below retry with a new
    port when the one they were given turns out to be taken.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_open(port: int, host: str = LOOPBACK, timeout: float = 0.25) -> bool:
    """True when a TCP connection to ``host:port`` succeeds within ``timeout`` seconds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for(
    predicate: Callable[[], T],
    timeout: float = 10.0,
    interval: float = 0.05,
    message: str = "",
) -> T:
    """Call ``predicate()`` every ``interval`` seconds until it returns a truthy value.

    Returns that value. Raises :class:`TimeoutError` (with ``message`` and the last exception
    the predicate raised, if any) when ``timeout`` seconds pass first. The predicate is always
    called at least once, and once more at the deadline.
    """
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
            last_exc = None
        except Exception as exc:  # noqa: BLE001 - reported below
            last_exc = exc
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_exc!r})" if last_exc else ""
            what = message or getattr(predicate, "__name__", "condition")
            raise TimeoutError(f"timed out after {timeout:.1f} s waiting for {what}{detail}")
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())) or interval)


def _proc_stat(pid: int) -> tuple[str, int, int, int] | None:
    """(state, ppid, pgrp, starttime in clock ticks) of ``pid`` from /proc, or None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode("ascii", "replace")
    except OSError:
        return None
    fields = data.rpartition(")")[2].split()
    # fields[0] is field 3 (state) of proc(5)
    return fields[0], int(fields[1]), int(fields[2]), int(fields[19])


def _alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    st = _proc_stat(pid)
    return st is not None and st[0] not in ("Z", "X")


def _all_pids() -> list[int]:
    return [int(n) for n in os.listdir("/proc") if n.isdigit()]


def _environ_tag(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            env = f.read()
    except OSError:
        return None
    key = TAG_VAR.encode() + b"="
    for item in env.split(b"\0"):
        if item.startswith(key):
            return item[len(key):].decode("ascii", "replace")
    return None


def _cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode("utf-8", "replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def _owner_id() -> str:
    st = _proc_stat(os.getpid())
    return f"{os.getpid()}:{st[3] if st else 0}"


def _new_tag() -> str:
    return f"{_owner_id()}:{uuid.uuid4().hex[:12]}"


def _tagged_pids(tag: str) -> list[int]:
    """Live pids whose environment carries exactly ``tag`` (never this process)."""
    me = os.getpid()
    return [p for p in _all_pids() if p != me and _environ_tag(p) == tag and _alive(p)]


def _group_pids(pgid: int) -> list[int]:
    """Live pids in process group ``pgid``."""
    out = []
    for p in _all_pids():
        st = _proc_stat(p)
        if st and st[2] == pgid and st[0] not in ("Z", "X"):
            out.append(p)
    return out


def _signal(pids: Iterable[int], sig: int) -> None:
    for p in pids:
        try:
            os.kill(p, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _killpg(pgid: int | None, sig: int) -> None:
    if not pgid or pgid <= 1 or pgid == os.getpgid(0):
        return
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _leftovers(pgid: int | None, tag: str) -> list[int]:
    pids = set(_tagged_pids(tag))
    if pgid and pgid > 1 and pgid != os.getpgid(0):
        pids.update(_group_pids(pgid))
    pids.discard(os.getpid())
    return sorted(pids)


def _kill_leftovers(pgid: int | None, tag: str, grace: float = 0.0) -> list[int]:
    """Wait up to ``grace`` seconds for the group/tagged processes to exit, then SIGKILL them.

    Returns the pids that had to be killed.
    """
    if grace > 0:
        try:
            wait_for(lambda: not _leftovers(pgid, tag), timeout=grace, interval=0.05)
            return []
        except TimeoutError:
            pass
    killed: list[int] = []
    for _ in range(50):
        pids = _leftovers(pgid, tag)
        if not pids:
            break
        killed.extend(p for p in pids if p not in killed)
        _signal(pids, signal.SIGCONT)  # a SIGSTOPped process must die too
        _killpg(pgid, signal.SIGKILL)
        _signal(pids, signal.SIGKILL)
        time.sleep(0.02)
    return killed


def _owner_alive(tag: str) -> bool:
    """True when the test run named in ``tag`` ("pid:starttime[:id]") still runs."""
    try:
        owner_pid, owner_start = tag.split(":")[:2]
        st = _proc_stat(int(owner_pid))
    except ValueError:
        return True  # not ours to judge
    return st is not None and st[0] not in ("Z", "X") and str(st[3]) == owner_start


TEMP_PREFIXES = ("logpipe-apache-", "logpipe-pg-")
OWNER_FILE = ".logpipe-test-owner"


def _make_temp_dir(prefix: str, tag: str) -> Path:
    root = Path(tempfile.mkdtemp(prefix=prefix))
    (root / OWNER_FILE).write_text(tag)
    return root



def _reap_server(server: Any) -> None:
    """Kill what is left of *server*'s process group and tagged processes, wait, forget it."""
    proc = server._proc
    if proc is None:
        return
    _kill_leftovers(proc.pid, server._tag)
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        pass
    server._proc = None
    _LIVE.discard(server)

def reap_orphans() -> list[int]:
    """Clean up after test runs that died without cleaning up (SIGKILL, OOM, power cut).

    SIGKILLs tagged server processes and removes the servers' temp dirs whose owning test run
    is gone; returns the killed pids. Safe with several test runs on one machine: only things
    whose recorded owner pid + start time no longer name a live process are touched.
    """
    killed = []
    me = os.getpid()
    for p in _all_pids():
        if p == me:
            continue
        tag = _environ_tag(p)
        if not tag or not _alive(p) or _owner_alive(tag):
            continue
        _signal([p], signal.SIGCONT)
        _signal([p], signal.SIGKILL)
        killed.append(p)
    for d in Path(tempfile.gettempdir()).iterdir():
        if d.name.startswith(TEMP_PREFIXES):
            try:
                tag = (d / OWNER_FILE).read_text()
            except OSError:
                continue
            if not _owner_alive(tag):
                shutil.rmtree(d, ignore_errors=True)
    return killed


_LIVE: "weakref.WeakSet[Any]" = weakref.WeakSet()


@atexit.register
def _stop_all_at_exit() -> None:
    for server in list(_LIVE):
        try:
            server.stop()
        except Exception:  # noqa: BLE001 - best effort at interpreter exit
            pass


def _server_env(tag: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env[TAG_VAR] = tag
    if extra:
        env.update(extra)
    return env


# --------------------------------------------------------------------------------------------
# memcached


class Memcached:
    """A private memcached on 127.0.0.1.

    Runs ``/usr/bin/memcached -l 127.0.0.1 -p PORT -U 0 -u root -m MEMORY_MB`` in its own
    process group. The constructor starts it and returns once the port accepts connections.

    Args:
        port: TCP port; None picks a free one.
        memory_mb: item memory limit in MiB (``-m``).
        extra_args: more memcached command-line arguments.
        start: start at once (default True).
        start_timeout: seconds to wait for the port to accept connections.
    """

    def __init__(
        self,
        port: int | None = None,
        memory_mb: int = 64,
        extra_args: Sequence[str] = (),
        start: bool = True,
        start_timeout: float = 10.0,
    ) -> None:
        if not os.access(MEMCACHED_BIN, os.X_OK):
            raise FileNotFoundError(f"{MEMCACHED_BIN} not found (Debian package memcached)")
        self._fixed_port = port is not None
        self._port = port if port is not None else free_port()
        self.memory_mb = memory_mb
        self.extra_args = list(extra_args)
        self.start_timeout = start_timeout
        self._proc: subprocess.Popen | None = None
        self._tag = _new_tag()
        self._stderr: Any = None
        if start:
            self.start()

    # -- properties
    @property
    def port(self) -> int:
        """TCP port on 127.0.0.1."""
        return self._port

    @property
    def host(self) -> str:
        return LOOPBACK

    @property
    def spec(self) -> str:
        """``"127.0.0.1:PORT"``, the form ``logpipe --memcached`` takes."""
        return f"{LOOPBACK}:{self._port}"

    @property
    def pid(self) -> int | None:
        """pid of the memcached process, None when not started."""
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        """True while the process exists (also while paused)."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def paused(self) -> bool:
        """True while the process is stopped by SIGSTOP."""
        st = _proc_stat(self._proc.pid) if self.running else None
        return bool(st and st[0] in ("T", "t"))

    # -- lifecycle
    def start(self) -> "Memcached":
        """Start the server; return once its port accepts connections.

        When the port was chosen automatically and turns out to be taken, retries on new ports.
        """
        if self.running:
            return self
        attempts = 1 if self._fixed_port else 5
        last = ""
        for _ in range(attempts):
            self._stderr = tempfile.TemporaryFile()
            cmd = [MEMCACHED_BIN, "-l", LOOPBACK, "-p", str(self._port), "-U", "0", "-u", "root",
                   "-m", str(self.memory_mb), *self.extra_args]
            self._proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._stderr,
                start_new_session=True, env=_server_env(self._tag), close_fds=True,
            )
            _LIVE.add(self)
            try:
                wait_for(lambda: self._proc.poll() is not None or port_open(self._port),
                         timeout=self.start_timeout, interval=0.02,
                         message=f"memcached on port {self._port}")
            except TimeoutError:
                self.stop()
                raise
            if self._proc.poll() is None:
                return self
            self._stderr.seek(0)
            last = self._stderr.read().decode("utf-8", "replace")
            self._cleanup_process()
            if not self._fixed_port:
                self._port = free_port()
        raise RuntimeError(f"memcached failed to start: {last.strip()}")

    def stop(self, graceful: bool = False, timeout: float = 5.0) -> None:
        """Stop the server and reap its process group. Works on a paused server. Safe twice.

        memcached keeps nothing on disk, so by default it is SIGKILLed at once; with
        ``graceful=True`` it gets SIGTERM first (memcached notices it on its 1-second clock tick)
        and SIGKILL after ``timeout`` seconds.
        """
        if self._proc is None:
            return
        if graceful and self._proc.poll() is None:
            _killpg(self._proc.pid, signal.SIGCONT)
            _killpg(self._proc.pid, signal.SIGTERM)
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        self._cleanup_process()

    def kill(self) -> None:
        """SIGKILL the server at once (a crash, from the clients' point of view)."""
        if self._proc is None:
            return
        _killpg(self._proc.pid, signal.SIGKILL)
        self._cleanup_process()

    def _cleanup_process(self) -> None:
        _reap_server(self)

    def restart(self) -> "Memcached":
        """Stop (if running) and start a fresh, empty server on the same port."""
        self.stop()
        fixed, self._fixed_port = self._fixed_port, True
        try:
            # the old listening socket may linger briefly; memcached sets SO_REUSEADDR
            wait_for(lambda: not port_open(self._port, timeout=0.1), timeout=5.0,
                     message=f"port {self._port} to close")
            return self.start()
        finally:
            self._fixed_port = fixed

    def pause(self) -> None:
        """SIGSTOP the server: connections are still accepted by the kernel, nothing answers."""
        if not self.running:
            raise RuntimeError("memcached is not running")
        os.kill(self._proc.pid, signal.SIGSTOP)
        wait_for(lambda: self.paused, timeout=5.0, interval=0.01, message="memcached to stop")

    def resume(self) -> None:
        """SIGCONT a paused server."""
        if not self.running:
            raise RuntimeError("memcached is not running")
        os.kill(self._proc.pid, signal.SIGCONT)
        wait_for(lambda: not self.paused, timeout=5.0, interval=0.01, message="memcached to resume")

    # -- clients
    def client(self, connect_timeout: float = 1.0, timeout: float = 1.0,
               default_noreply: bool = False, **kwargs: Any):
        """A new ``pymemcache.client.base.Client`` for this server.

        ``connect_timeout`` and ``timeout`` are seconds; more keyword arguments go to Client.
        ``default_noreply`` is False here (pymemcache's default is True): a ``set`` waits for
        STORED, so a ``get`` from another connection right after it sees the value.
        With noreply the write is unconfirmed and memcached may handle the other connection
        (on another worker thread) first.
        """
        from pymemcache.client.base import Client

        return Client((LOOPBACK, self._port), connect_timeout=connect_timeout, timeout=timeout,
                      default_noreply=default_noreply, **kwargs)

    def command(self, line: str | bytes, terminator: bytes = b"\r\n",
                timeout: float = 2.0) -> bytes:
        """Send one raw text-protocol command (``\\r\\n`` added) on a new connection and
        return the raw reply, read until it ends with ``terminator`` (``b"END\\r\\n"`` for
        ``stats``/``get``) or the server closes. ``timeout`` is seconds (socket.timeout raised).
        """
        data = line.encode() if isinstance(line, str) else line
        if not data.endswith(b"\r\n"):
            data += b"\r\n"
        buf = b""
        with socket.create_connection((LOOPBACK, self._port), timeout=timeout) as s:
            s.sendall(data)
            while not buf.endswith(terminator):
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
        return buf

    def stats(self, timeout: float = 2.0) -> dict[str, Any]:
        """The ``stats`` command as a dict: str keys; int or float values where they parse.

        ``timeout`` is seconds.
        """
        out: dict[str, Any] = {}
        for line in self.command(b"stats", b"END\r\n", timeout=timeout).decode("ascii", "replace").splitlines():
            parts = line.split(" ", 2)
            if len(parts) == 3 and parts[0] == "STAT":
                key, value = parts[1], parts[2]
                for conv in (int, float):
                    try:
                        out[key] = conv(value)
                        break
                    except ValueError:
                        continue
                else:
                    out[key] = value
        return out

    def __enter__(self) -> "Memcached":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<Memcached {self.spec} pid={self.pid}>"


# --------------------------------------------------------------------------------------------
# Apache httpd


# Debian's definitions (/etc/apache2/apache2.conf), verbatim. combinedio is not in Debian's
# apache2.conf; it is upstream httpd's definition (docs/conf/httpd.conf.in, needs mod_logio).
LOG_FORMATS = r'''LogFormat "%v:%p %h %l %u %t \"%r\" %>s %O \"%{Referer}i\" \"%{User-Agent}i\"" vhost_combined
LogFormat "%h %l %u %t \"%r\" %>s %O \"%{Referer}i\" \"%{User-Agent}i\"" combined
LogFormat "%h %l %u %t \"%r\" %>s %O" common
LogFormat "%{Referer}i -> %U" referer
LogFormat "%{User-agent}i" agent
LogFormat "%h %l %u %t \"%r\" %>s %b \"%{Referer}i\" \"%{User-Agent}i\" %I %O" combinedio
'''

# a 1x1 transparent PNG
_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082"
)

DEFAULT_FILES: dict[str, bytes] = {
    "index.html": b"<!doctype html><title>logpipe test</title><h1>logpipe test site</h1>\n",
    "robots.txt": b"User-agent: *\nDisallow:\n",
    "style.css": b"body { font-family: sans-serif; }\n",
    "app.js": b"console.log('logpipe');\n",
    "logo.png": _PNG,
    "favicon.ico": _PNG,
}

_MIME_TYPES = """text/html html htm
text/plain txt
text/css css
text/javascript js
application/json json
image/png png
image/x-icon ico
image/jpeg jpg jpeg
image/svg+xml svg
"""

RequestSpec = Union[str, Sequence[Any]]


class Apache:
    """A private Apache httpd (Debian's ``/usr/sbin/apache2``) on 127.0.0.1 with a generated config.

    Everything lives in a temporary directory ``root``: ``httpd.conf``, ``htdocs/`` (an
    ``index.html`` and a few static files), ``logs/error.log``, ``run/`` (pid file, runtime
    dir, mutexes). Readiness probes (HTTP GETs) go to a second private port whose
    ``<VirtualHost>`` logs to ``logs/probe.log``, so they never show up in the CustomLogs under
    test (unless extra_conf uses ``GlobalLog``). ``FallbackResource /index.html`` and ``AcceptPathInfo On`` make any ordinary
    path answer 200 while ``%r`` keeps the requested path. The config defines Debian's
    LogFormats (``vhost_combined``, ``combined`` and ``common`` with ``%O``) plus ``combinedio``.

    httpd is started as root (as on a real server), so piped loggers run as root; its children
    run as www-data. ``start()`` is *not* called by the constructor.

    Args:
        custom_logs: CustomLog directive lines, e.g.
            ``'CustomLog "|/abs/path/logpipe --memcached 127.0.0.1:1234" combined'`` or
            ``'CustomLog /tmp/x/access.log combined'``. A single string is accepted too.
        extra_conf: more config text appended at the end (``<VirtualHost>`` blocks …).
        port: TCP port; None picks a free one.
        mpm: ``"event"`` (default), ``"worker"`` or ``"prefork"``.
        log_level: ``LogLevel`` value (``"warn"`` by default; ``"info"`` shows more).
        server_name: host part of ``ServerName`` (what ``%v`` logs); its port is ``port``
            (what ``%p`` logs: the canonical port, 80 if ServerName had none).
        env: extra environment variables for httpd and so for its piped loggers.
        files: extra files for the DocumentRoot, ``{relative path: bytes or str}``.
    """

    def __init__(
        self,
        custom_logs: Sequence[str] | str = (),
        extra_conf: str = "",
        port: int | None = None,
        mpm: str = "event",
        log_level: str = "warn",
        server_name: str = "localhost",
        env: Mapping[str, str] | None = None,
        files: Mapping[str, bytes | str] | None = None,
    ) -> None:
        if not os.access(APACHE_BIN, os.X_OK):
            raise FileNotFoundError(f"{APACHE_BIN} not found (Debian package apache2)")
        if isinstance(custom_logs, str):
            custom_logs = [custom_logs]
        self.custom_logs = list(custom_logs)
        self.extra_conf = extra_conf
        self._fixed_port = port is not None
        self._port = port if port is not None else free_port()
        self._probe_port = free_port()
        self.mpm = mpm
        self.log_level = log_level
        self.server_name = server_name
        self.env = dict(env or {})
        self._tag = _new_tag()
        self._pgid: int | None = None
        self._started = False
        self.start_output = ""
        self.root = _make_temp_dir("logpipe-apache-", self._tag)
        os.chmod(self.root, 0o755)  # www-data children must reach htdocs
        for sub in ("htdocs", "logs", "run"):
            (self.root / sub).mkdir()
        os.chmod(self.root / "htdocs", 0o755)
        for name, content in {**DEFAULT_FILES, **(files or {})}.items():
            path = self.docroot / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content.encode() if isinstance(content, str) else content)
            os.chmod(path, 0o644)
        (self.root / "mime.types").write_text(_MIME_TYPES)
        self.write_config()

    # -- paths and properties
    @property
    def port(self) -> int:
        """TCP port on 127.0.0.1."""
        return self._port

    @property
    def conf_path(self) -> Path:
        return self.root / "httpd.conf"

    @property
    def docroot(self) -> Path:
        return self.root / "htdocs"

    @property
    def error_log_path(self) -> Path:
        return self.root / "logs" / "error.log"

    @property
    def pid_file(self) -> Path:
        return self.root / "run" / "httpd.pid"

    @property
    def pid(self) -> int | None:
        """pid of the httpd parent (from its PidFile) while it runs, else None."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _alive(pid) else None

    def url(self, path: str = "/") -> str:
        """``http://127.0.0.1:PORT`` + ``path``."""
        if not path.startswith("/"):
            path = "/" + path
        return f"http://{LOOPBACK}:{self._port}{path}"

    def error_log_text(self) -> str:
        """The whole ErrorLog (also where piped loggers' stderr goes); '' if none yet."""
        try:
            return self.error_log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    # -- config
    def config_text(self) -> str:
        """The generated httpd.conf."""
        r = self.root
        mods = APACHE_MODULES_DIR
        mpm = {"event": "mpm_event", "worker": "mpm_worker", "prefork": "mpm_prefork"}[self.mpm]
        # Every child from the start and none ever retired (MaxSpareThreads =
        # MaxRequestWorkers): a child that httpd stops for spare threads closes
        # its keep-alive connections, which wrk counts as read errors (4-8 in a
        # 30 s run with StartServers 2, with `cat` as the logger too).
        mpm_conf = {
            "event": "StartServers 4\nMinSpareThreads 25\nMaxSpareThreads 100\nThreadLimit 64\n"
                     "ThreadsPerChild 25\nMaxRequestWorkers 100\nMaxConnectionsPerChild 0\n",
            "worker": "StartServers 4\nMinSpareThreads 25\nMaxSpareThreads 100\nThreadLimit 64\n"
                      "ThreadsPerChild 25\nMaxRequestWorkers 100\nMaxConnectionsPerChild 0\n",
            "prefork": "StartServers 5\nMinSpareServers 5\nMaxSpareServers 10\n"
                       "MaxRequestWorkers 50\nMaxConnectionsPerChild 0\n",
        }[self.mpm]
        # log_config, logio and unixd are compiled into Debian's apache2 (apache2 -l); the
        # IfModule guards load them only from a build where they are shared modules.
        lines = [
            "# generated by tests/servers.py for a private test httpd",
            f'ServerRoot "{r}"',
            f'DefaultRuntimeDir "{r}/run"',
            f'PidFile "{r}/run/httpd.pid"',
            f"Mutex file:{r}/run default",
            f'ErrorLog "{r}/logs/error.log"',
            f"LogLevel {self.log_level}",
            "",
            f"LoadModule {mpm}_module {mods}/mod_{mpm}.so",
            *(f"<IfModule !mod_{m}.c>\n    LoadModule {m}_module {mods}/mod_{m}.so\n</IfModule>"
              for m in ("log_config", "logio", "unixd")),
            *(f"LoadModule {m}_module {mods}/mod_{m}.so"
              for m in ("authz_core", "dir", "mime", "alias", "setenvif")),
            "",
            f"Listen {LOOPBACK}:{self._port}",
            f"Listen {LOOPBACK}:{self._probe_port}",
            f"ServerName {self.server_name}:{self._port}",
            "ServerAdmin webmaster@localhost",
            "User www-data",
            "Group www-data",
            "HostnameLookups Off",
            "Timeout 30",
            "KeepAlive On",
            "MaxKeepAliveRequests 0",
            "KeepAliveTimeout 5",
            "AllowEncodedSlashes NoDecode",
            mpm_conf,
            f'TypesConfig "{r}/mime.types"',
            f'DocumentRoot "{r}/htdocs"',
            "<Directory />\n    Options None\n    AllowOverride None\n    Require all denied\n"
            "</Directory>",
            f'<Directory "{r}/htdocs">\n    Options None\n    AllowOverride None\n'
            "    Require all granted\n    AcceptPathInfo On\n</Directory>",
            "DirectoryIndex index.html",
            "FallbackResource /index.html",
            "",
            LOG_FORMATS,
            *self.custom_logs,
            "",
            "# readiness probes from tests/servers.py go to their own port and log, never to",
            "# the CustomLogs under test (a vhost with its own CustomLog skips the main ones)",
            f"<VirtualHost {LOOPBACK}:{self._probe_port}>",
            "    ServerName probe.invalid",
            f'    CustomLog "{r}/logs/probe.log" common',
            "</VirtualHost>",
            "",
            self.extra_conf,
            "",
        ]
        return "\n".join(lines)

    def write_config(self) -> Path:
        """(Re)write httpd.conf from the current attributes; takes effect on start/graceful."""
        self.conf_path.write_text(self.config_text())
        return self.conf_path

    def _ctl(self, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess:
        return subprocess.run(
            [APACHE_BIN, "-f", str(self.conf_path), *args],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
            env=_server_env(self._tag, self.env), cwd=str(self.root),
        )

    def configtest(self) -> str:
        """Run ``apache2 -t``; return its output, raise RuntimeError if the config is bad."""
        res = self._ctl("-t")
        out = (res.stdout + res.stderr).strip()
        if res.returncode != 0:
            raise RuntimeError(f"apache2 -t failed:\n{out}\n--- config ---\n{self.config_text()}")
        return out

    def _generations(self) -> int:
        return self.error_log_text().count("resuming normal operations")

    # -- lifecycle
    def start(self, timeout: float = 20.0) -> "Apache":
        """``apache2 -f CONF -k start``; return once the port answers HTTP.

        Raises RuntimeError (with the ErrorLog) when httpd does not come up within ``timeout``
        seconds. An automatically chosen port that turns out to be taken is replaced and retried.
        """
        if self.pid:
            return self
        attempts = 1 if self._fixed_port else 4
        for attempt in range(attempts):
            self.write_config()
            log_before = len(self.error_log_text())
            res = self._ctl("-k", "start", timeout=timeout)
            _LIVE.add(self)
            self._started = True
            out = (res.stdout + res.stderr).strip()
            # what `apache2 -k start` printed: config warnings, and the stderr of the first
            # (short-lived) piped-logger spawn, which happens before httpd detaches
            self.start_output = out
            if res.returncode != 0:
                self._force_cleanup()
                raise RuntimeError(f"apache2 -k start failed ({res.returncode}): {out}\n"
                                   f"{self.error_log_text()}")
            try:
                wait_for(lambda: self._up_or_failed(), timeout=timeout, interval=0.02,
                         message=f"httpd on port {self._port}")
            except TimeoutError:
                log = self.error_log_text()
                self._force_cleanup()
                raise RuntimeError(f"httpd did not answer on port {self._port}:\n{out}\n{log}")
            if self.pid and self._answers():
                self._pgid = os.getpgid(self.pid)
                return self
            log = self.error_log_text()[log_before:]
            self._force_cleanup()
            if "Address already in use" in log and attempt + 1 < attempts:
                if not self._fixed_port:
                    self._port = free_port()
                self._probe_port = free_port()
                continue
            raise RuntimeError(f"httpd failed to start:\n{out}\n{log}")
        raise AssertionError("unreachable")

    def _answers(self) -> bool:
        try:
            conn = http.client.HTTPConnection(LOOPBACK, self._probe_port, timeout=2.0)
            try:
                conn.request("GET", "/robots.txt", headers={"User-Agent": "logpipe-tests-probe"})
                resp = conn.getresponse()
                resp.read()
                return resp.status > 0
            finally:
                conn.close()
        except (OSError, http.client.HTTPException):
            return False

    def _up_or_failed(self) -> bool:
        pid = self.pid
        if pid is None:
            # pid file not written yet, or httpd already died: done when nothing tagged is left
            time.sleep(0.02)
            return self.pid is None and not _tagged_pids(self._tag)
        return port_open(self._port) and self._answers()  # probe port: not in the CustomLogs

    def _signal_and_wait(self, action: str, timeout: float) -> None:
        pid = self.pid
        if pid is None:
            raise RuntimeError("httpd is not running")
        before = self._generations()
        res = self._ctl("-k", action, timeout=timeout)
        if res.returncode != 0:
            raise RuntimeError(f"apache2 -k {action} failed: {res.stdout}{res.stderr}")
        wait_for(lambda: self._generations() > before and self.pid == pid and self._answers(),
                 timeout=timeout, interval=0.02,
                 message=f"httpd {action} (error log:\n{self.error_log_text()[-2000:]})")

    def graceful(self, timeout: float = 20.0) -> None:
        """``apache2 -k graceful`` (SIGUSR1); return once the new generation answers.

        httpd sends each piped logger one SIGTERM and starts new ones; old children finish
        their requests first. ``timeout`` is seconds.
        """
        self._signal_and_wait("graceful", timeout)

    def restart(self, timeout: float = 20.0) -> None:
        """``apache2 -k restart`` (SIGHUP); return once the new generation answers."""
        self._signal_and_wait("restart", timeout)

    def stop(self, timeout: float = 20.0, logger_grace: float = 5.0) -> None:
        """``apache2 -k stop``; wait until the httpd pid is gone, then until its process group
        (piped loggers included) has exited, SIGKILLing what is left after ``logger_grace``
        seconds. ``timeout`` (seconds) bounds the wait for httpd itself. Safe to call twice.
        """
        if not self._started:
            return
        pid = self.pid
        if pid is not None:
            self._pgid = self._pgid or os.getpgid(pid)
            try:
                self._ctl("-k", "stop", timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
            try:
                wait_for(lambda: not _alive(pid), timeout=timeout, interval=0.02,
                         message=f"httpd pid {pid} to exit")
            except TimeoutError:
                pass
        self._force_cleanup(grace=logger_grace)

    def _force_cleanup(self, grace: float = 0.0) -> None:
        pid = self.pid
        pgid = self._pgid
        if pid is not None and pgid is None:
            try:
                pgid = os.getpgid(pid)
            except ProcessLookupError:
                pgid = None
        if pid is not None and _alive(pid):
            _signal([pid], signal.SIGKILL)
        _kill_leftovers(pgid, self._tag, grace=grace)
        self._started = False
        self._pgid = None
        _LIVE.discard(self)

    def cleanup(self) -> None:
        """Stop (if needed) and delete the temporary directory."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def processes(self) -> list[dict[str, Any]]:
        """Live processes of this httpd: parent, children, piped loggers and theirs.

        Each is ``{"pid": int, "ppid": int, "cmdline": [str, ...]}``.
        """
        out = []
        for p in _leftovers(self._pgid, self._tag):
            st = _proc_stat(p)
            if st:
                out.append({"pid": p, "ppid": st[1], "cmdline": _cmdline(p)})
        return out

    def logger_pids(self, contains: str = "") -> list[int]:
        """pids of the piped loggers httpd spawned (its direct children that are not httpd),
        optionally only those whose command line contains ``contains``."""
        parent = self.pid
        return [p["pid"] for p in self.processes()
                if p["ppid"] == parent and p["cmdline"][:1] != [APACHE_BIN]
                and contains in " ".join(p["cmdline"])]

    # -- clients
    def get(self, path: str = "/", headers: Mapping[str, str] | None = None,
            method: str = "GET", timeout: float = 10.0) -> tuple[int, bytes]:
        """One request on a new connection; returns ``(status, body)``. ``timeout`` in seconds."""
        conn = http.client.HTTPConnection(LOOPBACK, self._port, timeout=timeout)
        try:
            conn.request(method, path, headers=dict(headers or {}))
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def raw_request(self, data: bytes, timeout: float = 5.0) -> bytes:
        """Send raw bytes (e.g. a malformed request line), return all bytes until the server
        closes or ``timeout`` seconds pass. Add ``Connection: close`` yourself."""
        buf = b""
        with socket.create_connection((LOOPBACK, self._port), timeout=timeout) as s:
            s.sendall(data)
            try:
                while chunk := s.recv(65536):
                    buf += chunk
            except socket.timeout:
                pass
        return buf

    def send(self, requests: Iterable[RequestSpec], concurrency: int = 8,
             timeout: float = 10.0) -> tuple[int, int]:
        """Send requests from ``concurrency`` threads, each with one keep-alive connection.

        Each request is a path string, ``(path, headers_dict)`` or
        ``(path, headers_dict, method)``. A request counts as ok when a response with status
        below 400 arrives; as failed on a 4xx/5xx or a connection error. A request whose reused
        keep-alive connection turns out closed by the server is retried once on a new one.
        ``timeout`` is the per-request socket timeout in seconds.
        Returns ``(ok_count, failed_count)``.
        """
        items = []
        for r in requests:
            if isinstance(r, str):
                items.append((r, {}, "GET"))
            else:
                path, headers, *rest = r
                items.append((path, dict(headers or {}), rest[0] if rest else "GET"))
        local = threading.local()
        conns: list[http.client.HTTPConnection] = []
        lock = threading.Lock()

        def one(item: tuple[str, dict, str]) -> bool:
            path, headers, method = item
            for attempt in (0, 1):
                conn = getattr(local, "conn", None)
                reused = conn is not None
                if conn is None:
                    conn = http.client.HTTPConnection(LOOPBACK, self._port, timeout=timeout)
                    local.conn = conn
                    with lock:
                        conns.append(conn)
                try:
                    conn.request(method, path, headers=headers)
                    resp = conn.getresponse()
                    resp.read()
                    if resp.will_close:
                        conn.close()
                        local.conn = None
                    return resp.status < 400
                except (http.client.RemoteDisconnected, ConnectionResetError,
                        BrokenPipeError):
                    conn.close()
                    local.conn = None
                    if attempt or not reused:
                        return False
                except (OSError, http.client.HTTPException):
                    conn.close()
                    local.conn = None
                    return False
            return False

        try:
            with concurrent.futures.ThreadPoolExecutor(max(1, concurrency)) as pool:
                results = list(pool.map(one, items))
        finally:
            for c in conns:
                c.close()
        ok = sum(results)
        return ok, len(results) - ok

    def __enter__(self) -> "Apache":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    def __repr__(self) -> str:
        return f"<Apache 127.0.0.1:{self._port} pid={self.pid} root={self.root}>"


# --------------------------------------------------------------------------------------------
# PostgreSQL


def postgres_bindir() -> Path | None:
    """Directory of the newest installed ``/usr/lib/postgresql/<major>/bin``, or None."""
    found = glob.glob("/usr/lib/postgresql/*/bin/postgres")

    def major(p: str) -> tuple[int, ...]:
        v = Path(p).parent.parent.name
        return tuple(int(x) for x in re.findall(r"\d+", v)) or (0,)

    return Path(max(found, key=major)).parent if found else None


class Postgres:
    """A private PostgreSQL cluster on 127.0.0.1 with ``trust`` auth.

    ``initdb`` runs into a temporary directory as the ``postgres`` OS user (the server refuses
    to run as root), with fsync off for speed. The unix socket lives in the temp dir too.
    The constructor starts it and creates database ``dbname``.

    Args:
        dbname: database created at start.
        port: TCP port; None picks a free one.
        bindir: PostgreSQL's bin directory; None finds the newest with a glob.
        os_user: OS user that owns and runs the cluster.
        start: start at once (default True).
    """

    def __init__(
        self,
        dbname: str = "logpipe_test",
        port: int | None = None,
        bindir: str | os.PathLike | None = None,
        os_user: str = "postgres",
        start: bool = True,
    ) -> None:
        bd = Path(bindir) if bindir else postgres_bindir()
        if bd is None or not (bd / "postgres").exists():
            raise FileNotFoundError("PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin)")
        self.bindir = bd
        self.dbname = dbname
        self.os_user = os_user
        self._fixed_port = port is not None
        self._port = port if port is not None else free_port()
        self._tag = _new_tag()
        self._proc: subprocess.Popen | None = None
        self.root: Path | None = None
        if start:
            self.start()

    @property
    def port(self) -> int:
        """TCP port on 127.0.0.1."""
        return self._port

    @property
    def user(self) -> str:
        """Database superuser name."""
        return "postgres"

    @property
    def url(self) -> str:
        """SQLAlchemy URL with the psycopg 3 driver:
        ``postgresql+psycopg://postgres@127.0.0.1:PORT/DBNAME``."""
        return self.url_for(self.dbname)

    def url_for(self, dbname: str) -> str:
        """SQLAlchemy URL of another database on this server."""
        return f"postgresql+psycopg://{self.user}@{LOOPBACK}:{self._port}/{dbname}"

    @property
    def dsn(self) -> str:
        """libpq connection string for ``psycopg.connect``."""
        return f"host={LOOPBACK} port={self._port} user={self.user} dbname={self.dbname}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc and self._proc.poll() is None else None

    @property
    def log_path(self) -> Path | None:
        return self.root / "postgres.log" if self.root else None

    def log_text(self) -> str:
        """The server's stderr log."""
        try:
            return self.log_path.read_text(errors="replace") if self.log_path else ""
        except FileNotFoundError:
            return ""

    def _as_user(self) -> dict[str, Any]:
        pw = pwd.getpwnam(self.os_user)
        return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}

    def start(self, timeout: float = 30.0) -> "Postgres":
        """initdb (first time only), start the server, wait until it accepts connections,
        create the database. ``timeout`` is seconds."""
        if self.pid:
            return self
        pw = pwd.getpwnam(self.os_user)
        if self.root is None:
            self.root = _make_temp_dir("logpipe-pg-", self._tag)
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
            res = subprocess.run(
                [str(self.bindir / "initdb"), "-D", str(self.root / "data"), "-U", "postgres",
                 "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"],
                stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120,
                cwd=str(self.root), env=_server_env(self._tag, {"LC_ALL": "C"}),
                **self._as_user(),
            )
            if res.returncode != 0:
                raise RuntimeError(f"initdb failed: {res.stdout}{res.stderr}")
        attempts = 1 if self._fixed_port else 4
        for attempt in range(attempts):
            log = open(self.log_path, "ab")
            os.chown(self.log_path, pw.pw_uid, pw.pw_gid)
            self._proc = subprocess.Popen(
                [str(self.bindir / "postgres"), "-D", str(self.root / "data"),
                 "-p", str(self._port), "-c", f"listen_addresses={LOOPBACK}",
                 "-c", f"unix_socket_directories={self.root}",
                 "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
                 "-c", "max_connections=60", "-c", "shared_buffers=32MB"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                cwd=str(self.root), env=_server_env(self._tag, {"LC_ALL": "C"}),
                **self._as_user(),
            )
            log.close()
            _LIVE.add(self)
            try:
                wait_for(lambda: self._proc.poll() is not None or self._ready(), timeout=timeout,
                         interval=0.05, message=f"postgres on port {self._port}")
            except TimeoutError:
                text = self.log_text()
                self.stop()
                raise RuntimeError(f"postgres did not become ready:\n{text}")
            if self._proc.poll() is None:
                break
            text = self.log_text()
            self._cleanup_process()
            if "could not bind" in text and not self._fixed_port and attempt + 1 < attempts:
                self._port = free_port()
                continue
            raise RuntimeError(f"postgres failed to start:\n{text}")
        self.create_database(self.dbname, exist_ok=True)
        return self

    def _ready(self) -> bool:
        res = subprocess.run(
            [str(self.bindir / "pg_isready"), "-q", "-h", LOOPBACK, "-p", str(self._port),
             "-U", "postgres", "-d", "postgres"],
            stdin=subprocess.DEVNULL, capture_output=True, timeout=10,
        )
        return res.returncode == 0

    def psql(self, sql: str, dbname: str | None = None) -> str:
        """Run SQL with ``psql`` (stop on first error); return its stdout."""
        res = subprocess.run(
            [str(self.bindir / "psql"), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1",
             "-h", LOOPBACK, "-p", str(self._port), "-U", "postgres",
             "-d", dbname or self.dbname, "-c", sql],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
        )
        if res.returncode != 0:
            raise RuntimeError(f"psql failed: {res.stderr.strip()}")
        return res.stdout

    def create_database(self, name: str, exist_ok: bool = False) -> str:
        """Create database ``name`` (a fresh one per test, if wanted); return its SQLAlchemy URL."""
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", name):
            raise ValueError(f"bad database name {name!r}")
        exists = self.psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'",
                           dbname="postgres").strip()
        if exists:
            if not exist_ok:
                raise RuntimeError(f"database {name} exists")
        else:
            self.psql(f'CREATE DATABASE "{name}"', dbname="postgres")
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        """Drop database ``name`` (its connections are terminated)."""
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", name):
            raise ValueError(f"bad database name {name!r}")
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', dbname="postgres")

    def stop(self, timeout: float = 10.0, remove: bool = True) -> None:
        """Fast shutdown (SIGINT), SIGKILL of the process group after ``timeout`` seconds, and
        removal of the temp dir unless ``remove`` is False. Safe to call twice."""
        if self._proc is not None:
            if self._proc.poll() is None:
                _signal([self._proc.pid], signal.SIGINT)
                try:
                    self._proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    pass
            self._cleanup_process()
        if remove and self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def _cleanup_process(self) -> None:
        _reap_server(self)

    def __enter__(self) -> "Postgres":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<Postgres {self.url} pid={self.pid}>"
