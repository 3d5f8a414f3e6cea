#!/usr/bin/python3
"""Test harness: private RabbitMQ and FerretDB servers and service processes.

Used by the pytest suites (through tests/conftest.py) and by CTest, whose C "live"
tests run as

    /usr/bin/python3 tests/harness.py with-deps [--no-rabbit] [--no-mongo] -- CMD ARGS...

which starts RabbitMQ and FerretDB (on a private PostgreSQL, or SQLite with
VOTER_DB=sqlite) on free loopback ports in a temporary run directory, runs CMD with
AMQP_URL and MONGODB_URI exported, stops everything and exits with CMD's exit code.

Rules this module keeps (see ../shared/docs/ENVIRONMENT.md):
  * every port is on 127.0.0.1 and below the kernel's ephemeral range (32768);
  * every process is started in its own session, its pid is recorded, and it is
    stopped by pid (never by name);
  * everything still running is stopped at interpreter exit (atexit), and a small
    watchdog process kills it if this interpreter dies without running atexit
    (SIGKILL from a CTest timeout, for instance).

Only the standard library plus Debian's python3-requests / python3-pymongo are used;
run it with /usr/bin/python3.
"""

from __future__ import annotations

import argparse
import atexit
import hashlib
import hmac
import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Iterable, Optional

REPO_ROOT = Path(__file__).resolve().parent.parent

RABBITMQ_VERSION = "3.10.8"
RABBITMQ_SBIN = Path(
    os.environ.get("RABBITMQ_SBIN", f"/usr/lib/rabbitmq/lib/rabbitmq_server-{RABBITMQ_VERSION}/sbin")
)
TOOLS_DIR = Path(os.environ.get("VOTER_TOOLS_DIR", "/opt/voter-tools"))

SANITIZER_DEFAULTS = {
    "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:halt_on_error=1",
    "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1",
}
# Variables passed from the harness's own environment to service processes.
SERVICE_INHERITED_ENV = ("PATH", "HOME", "TMPDIR", "LANG", "LC_ALL", "LD_LIBRARY_PATH",
                         "ASAN_SYMBOLIZER_PATH", "LLVM_SYMBOLIZER_PATH")


# One gateway proof secret per harness process (per test file under CTest): every service
# and gateway the suites start gets it as GATEWAY_PROOF_SECRET, and admin_headers() signs
# with it. Generated, so no test can depend on a published value.
PROOF_SECRET = secrets.token_hex(32)
ADMIN_SCOPES = "read vote write admin"


class HarnessError(RuntimeError):
    """A server or service did not start, stop or behave as the harness expects."""


# --------------------------------------------------------------------------- paths

def repo_root() -> Path:
    """The repository root (computed from this file's location)."""
    return REPO_ROOT


def build_dir() -> Path:
    """$VOTER_BUILD_DIR, else <repo>/build-asan."""
    env = os.environ.get("VOTER_BUILD_DIR")
    return Path(env).resolve() if env else REPO_ROOT / "build-asan"


def binary(name: str) -> Path:
    """Path of a service executable: <build>/<name>/voter-<name>."""
    return build_dir() / name / f"voter-{name}"


def ferretdb_binary() -> Path:
    """$FERRETDB_BIN, else $VOTER_TOOLS_DIR/bin/ferretdb (/opt/voter-tools), else PATH."""
    env = os.environ.get("FERRETDB_BIN")
    if env:
        return Path(env)
    tool = TOOLS_DIR / "bin" / "ferretdb"
    if tool.exists():
        return tool
    found = shutil.which("ferretdb")
    if found:
        return Path(found)
    raise HarnessError(f"ferretdb not found: set FERRETDB_BIN or run scripts/setup (expects {tool})")


def make_run_dir(prefix: str = "voter-test-") -> Path:
    """A fresh directory under $TMPDIR (or /tmp) for one run's data and logs."""
    return Path(tempfile.mkdtemp(prefix=prefix))


def remove_run_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


# --------------------------------------------------------------------------- ports

_handed_out: set[int] = set()
_port_lock = threading.Lock()


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port(low: int = 20000, high: int = 32000) -> int:
    """A free TCP port on 127.0.0.1, below the ephemeral range, not handed out before
    by this process. Randomised so that concurrent runs rarely pick the same one."""
    high = min(high, _ephemeral_low() - 1)
    with _port_lock:
        for _ in range(1000):
            port = random.randint(low, high)
            if port in _handed_out:
                continue
            if _port_is_free(port):
                _handed_out.add(port)
                return port
    raise HarnessError(f"no free port in {low}..{high}")


def _port_is_free(port: int) -> bool:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


# --------------------------------------------------------------------------- waiting

def wait_until(fn: Callable[[], object], timeout: float = 10.0, interval: float = 0.05,
               message: Optional[str] = None) -> object:
    """Call fn until it returns a truthy value and return that value.

    Exceptions raised by fn count as "not yet". On timeout raises AssertionError
    naming the condition, the last value and the last exception."""
    deadline = time.monotonic() + timeout
    last_value: object = None
    last_exc: Optional[BaseException] = None
    attempts = 0
    while True:
        attempts += 1
        try:
            last_value = fn()
            last_exc = None
            if last_value:
                return last_value
        except Exception as exc:  # noqa: BLE001 - any failure means "not yet"
            last_exc = exc
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    what = message or getattr(fn, "__name__", repr(fn))
    detail = f"last value {last_value!r}"
    if last_exc is not None:
        detail = f"last error {type(last_exc).__name__}: {last_exc}"
    raise AssertionError(f"timed out after {timeout:g}s ({attempts} tries) waiting for {what}; {detail}")


# --------------------------------------------------------------------------- processes

def _proc_state(pid: int) -> Optional[str]:
    """State letter from /proc/PID/stat, or None when the process does not exist."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return None
    return data.rsplit(")", 1)[1].split()[0]


def _proc_start(pid: int) -> Optional[int]:
    """Start time of pid (clock ticks since boot, /proc/PID/stat field 22), or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def pid_alive(pid: int, start: Optional[int] = None) -> bool:
    """True if pid exists and is not a zombie (and, given `start`, is still the same
    process: its start time matches, so a reused pid is not mistaken for ours)."""
    state = _proc_state(pid)
    if state is None or state in ("Z", "X"):
        return False
    return start is None or _proc_start(pid) == start


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    return children


def process_tree(pid: int) -> list[int]:
    """pid and all its live descendants."""
    children = _children_map()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        if pid_alive(p):
            out.append(p)
        todo.extend(children.get(p, []))
    return out


def _tail(path: Path, lines: int = 40) -> str:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return f"(no log at {path})"
    text = data.decode("utf-8", "replace").splitlines()
    return "\n".join(text[-lines:])


class _Reaper:
    """Watchdog that kills what we started if this interpreter dies abruptly.

    The watchdog holds the read end of a pipe; when this process exits for any reason
    (including SIGKILL) the pipe reaches EOF and the watchdog kills every process group
    and pid still listed in the registry file. Clean stops remove their entries first,
    so after a normal run the watchdog finds nothing to do."""

    SCRIPT = r"""
import os, signal, sys, time
fd, path = int(sys.argv[1]), sys.argv[2]
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGHUP, signal.SIG_IGN)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
while True:
    try:
        if not os.read(fd, 64):
            break
    except InterruptedError:
        continue
try:
    entries = open(path).read().split()
except OSError:
    entries = []
def same(pid, start):
    try:
        return open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()[19] == start
    except (OSError, IndexError):
        return False
def send(sig):
    for e in entries:
        kind, num, start = (e.split(":") + [""])[:3]
        try:
            if kind == "g":
                os.killpg(int(num), sig)
            elif same(int(num), start):
                os.kill(int(num), sig)
        except (OSError, ValueError):
            pass
if entries:
    send(signal.SIGTERM)
    time.sleep(3)
    send(signal.SIGKILL)
try:
    os.unlink(path)
except OSError:
    pass
"""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[str] = []
        self._proc: Optional[subprocess.Popen] = None
        self._wfd: Optional[int] = None
        self._path: Optional[str] = None

    def _ensure(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            return
        fd, self._path = tempfile.mkstemp(prefix="voter-reaper-", suffix=".pids")
        os.close(fd)
        rfd, wfd = os.pipe()
        self._proc = subprocess.Popen(
            [sys.executable, "-c", self.SCRIPT, str(rfd), self._path],
            pass_fds=(rfd,), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True)
        os.close(rfd)
        self._wfd = wfd

    def _write(self) -> None:
        assert self._path is not None
        tmp = self._path + ".tmp"
        with open(tmp, "w") as f:
            f.write("\n".join(self._entries) + "\n")
        os.replace(tmp, self._path)

    def add(self, *, pgid: Optional[int] = None, pids: Iterable[int] = ()) -> None:
        with self._lock:
            self._ensure()
            if pgid is not None:
                self._entries.append(f"g:{pgid}")
            self._entries.extend(f"p:{p}:{_proc_start(p)}" for p in pids)
            self._write()

    def remove(self, *, pgid: Optional[int] = None, pids: Iterable[int] = ()) -> None:
        with self._lock:
            if self._path is None:
                return
            drop = {f"p:{p}" for p in pids}
            if pgid is not None:
                drop.add(f"g:{pgid}")
            self._entries = [e for e in self._entries
                             if e not in drop and e.rsplit(":", 1)[0] not in drop]
            self._write()

    def close(self) -> None:
        """Called at exit after everything was stopped: let the watchdog finish."""
        with self._lock:
            if self._wfd is not None:
                os.close(self._wfd)
                self._wfd = None
            if self._proc is not None:
                try:
                    self._proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass


_reaper = _Reaper()
_running: list = []  # objects with a stop() method, in start order
_running_lock = threading.Lock()


def _track(obj) -> None:
    with _running_lock:
        if obj not in _running:
            _running.append(obj)


def _untrack(obj) -> None:
    with _running_lock:
        if obj in _running:
            _running.remove(obj)


def stop_all() -> list[str]:
    """Stop everything this process started and still runs (newest first).
    Returns the error messages (also printed to stderr)."""
    errors = []
    with _running_lock:
        items = list(reversed(_running))
    for obj in items:
        try:
            obj.stop()
        except Exception as exc:  # noqa: BLE001 - keep stopping the rest
            errors.append(f"{obj!r}: {exc}")
            print(f"harness: stopping {obj!r} failed: {exc}", file=sys.stderr)
        _untrack(obj)
    return errors


@atexit.register
def _at_exit() -> None:
    stop_all()
    _reaper.close()


def _spawn(argv: list, env: dict, log_path: Path, cwd: Optional[Path] = None) -> subprocess.Popen:
    """Start argv in its own session with stdout+stderr appended to log_path."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([str(a) for a in argv], env=env, stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, cwd=cwd,
                                start_new_session=True)
    _reaper.add(pgid=proc.pid)
    return proc


def _terminate(proc: subprocess.Popen, grace: float) -> bool:
    """SIGTERM, wait up to grace seconds, then SIGKILL. Returns True if SIGKILL was needed."""
    if proc.poll() is not None:
        return False
    try:
        proc.send_signal(signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=grace)
        return False
    except subprocess.TimeoutExpired:
        pass
    try:
        proc.kill()
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)
    return True


def _live_processes(field: int, value: int) -> list[int]:
    """Live (non-zombie) processes whose /proc/<pid>/stat field (counted after the
    command's closing parenthesis: 1 parent, 2 process group) is value."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] not in ("Z", "X") and int(fields[field]) == value:
            found.append(int(entry))
    return found


def _group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes whose process group is pgid."""
    return _live_processes(2, pgid)


def _children(pid: int) -> list[int]:
    """Live (non-zombie) processes whose parent is pid."""
    return _live_processes(1, pid)


def _kill_group_leftovers(pgid: int) -> list[int]:
    """Kill anything still alive in process group pgid (one we created); return it."""
    left = _group_members(pgid)
    if left:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except OSError:
            pass
    return left


# --------------------------------------------------------------------------- RabbitMQ

def _start_epmd(owner) -> None:
    """Starts the private epmd of a node or a cluster (owner: .run_dir, ._epmd, .epmd_port,
    .epmd_log, .env()) unless it already runs."""
    if owner._epmd is not None and owner._epmd.poll() is None:
        return
    owner.run_dir.mkdir(parents=True, exist_ok=True)
    owner._epmd = _spawn(["epmd", "-port", str(owner.epmd_port), "-address", "127.0.0.1"],
                         owner.env(), owner.epmd_log)
    try:
        wait_until(lambda: port_open(owner.epmd_port) or owner._epmd.poll() is not None,
                   timeout=10, message=f"epmd on port {owner.epmd_port}")
    except AssertionError:
        pass
    if owner._epmd.poll() is not None:
        raise HarnessError(f"epmd exited ({owner._epmd.returncode}) on port {owner.epmd_port}:\n"
                           f"{_tail(owner.epmd_log)}")


class RabbitMQ:
    """A private RabbitMQ node on 127.0.0.1 with all ports below 32768.

    Data (mnesia), logs, HOME (Erlang cookie) and configuration live under run_dir.
    The node's epmd is started by the harness itself (so its pid is known) and killed
    with `epmd -port N -kill` on stop."""

    def __init__(self, run_dir, amqp_port: Optional[int] = None, dist_port: Optional[int] = None,
                 epmd_port: Optional[int] = None, nodename: Optional[str] = None) -> None:
        self.run_dir = Path(run_dir)
        self.port = amqp_port or free_port()
        self.dist_port = dist_port or free_port()
        self.epmd_port = epmd_port or free_port()
        self.nodename = nodename or f"vt{self.port}@localhost"
        self.home = self.run_dir / "home"
        self.pid_file = self.run_dir / "rabbit.pid"
        self.log_path = self.run_dir / "server.out"
        self.epmd_log = self.run_dir / "epmd.log"
        self._proc: Optional[subprocess.Popen] = None
        self._epmd: Optional[subprocess.Popen] = None
        self.pids: list[int] = []  # server script, beam.smp and its helpers (after start)
        self._pid_starts: dict[int, Optional[int]] = {}
        self.start_seconds: Optional[float] = None
        self.stop_seconds: Optional[float] = None

    def __repr__(self) -> str:
        return f"RabbitMQ({self.nodename}, amqp={self.port})"

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> Optional[int]:
        return self._proc.pid if self._proc else None

    def env(self) -> dict:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.home),
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "RABBITMQ_NODENAME": self.nodename,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "ERL_EPMD_PORT": str(self.epmd_port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_MNESIA_BASE": str(self.run_dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.run_dir / "log"),
            "RABBITMQ_PID_FILE": str(self.pid_file),
            "RABBITMQ_CONF_ENV_FILE": str(self.run_dir / "rabbitmq-env.conf"),
            "RABBITMQ_CONFIG_FILE": str(self.run_dir / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.run_dir / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.run_dir / "enabled_plugins"),
            # distribution listener on loopback only; our own epmd is already running
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS":
                "-kernel inet_dist_use_interface {127,0,0,1} -start_epmd false",
        }
        return env

    def _prepare(self) -> None:
        for d in (self.home, self.run_dir / "mnesia", self.run_dir / "log"):
            d.mkdir(parents=True, exist_ok=True)
        cookie = self.home / ".erlang.cookie"
        if not cookie.exists():
            cookie.write_text(secrets.token_hex(16).upper())
            cookie.chmod(0o400)
        (self.run_dir / "rabbitmq-env.conf").write_text("# harness: environment comes from the caller\n")
        (self.run_dir / "enabled_plugins").write_text("[].\n")
        (self.run_dir / "rabbitmq.conf").write_text(
            "loopback_users.guest = true\n"
            f"listeners.tcp.default = 127.0.0.1:{self.port}\n"
            "disk_free_limit.absolute = 50MB\n"
        )
        # A quorum queue dead-letters at least once: a message whose target queue was losing
        # its leader is re-sent after this many ms without a confirm (RabbitMQ's default,
        # 180 s, holds a retried event back three minutes after a node dies).
        (self.run_dir / "advanced.config").write_text(
            "[{rabbit, [{dead_letter_worker_publisher_confirm_timeout, 5000}]}].\n")

    def ctl(self, *args: str, timeout: float = 60, check: bool = True) -> str:
        """Run rabbitmqctl -n NODE ARGS... and return its stdout."""
        cmd = [str(RABBITMQ_SBIN / "rabbitmqctl"), "-n", self.nodename, *args]
        res = subprocess.run(cmd, env=self.env(), stdin=subprocess.DEVNULL,
                             capture_output=True, text=True, timeout=timeout)
        if check and res.returncode != 0:
            raise HarnessError(f"{' '.join(cmd[1:])} failed ({res.returncode}):\n{res.stdout}{res.stderr}")
        return res.stdout

    def _start_epmd(self) -> None:
        _start_epmd(self)

    def start(self, timeout: float = 90) -> "RabbitMQ":
        if self.running:
            return self
        t0 = time.monotonic()
        self._prepare()
        try:
            self.pid_file.unlink()
        except FileNotFoundError:
            pass
        _track(self)
        self._start_epmd()
        self._proc = _spawn([RABBITMQ_SBIN / "rabbitmq-server"], self.env(), self.log_path)
        # `wait` returns once the pid file exists and the rabbit app is running
        try:
            self.ctl("wait", "--timeout", str(int(timeout)), str(self.pid_file), timeout=timeout + 15)
        except (HarnessError, subprocess.TimeoutExpired) as exc:
            log = _tail(self.log_path)
            self.stop(quiet=True)
            raise HarnessError(f"RabbitMQ {self.nodename} did not start: {exc}\n{log}") from None
        self._record_pids()
        self.start_seconds = time.monotonic() - t0
        return self

    def _record_pids(self) -> None:
        """Remember the server's process tree (pid + start time) for the stop check."""
        new = [p for p in process_tree(self._proc.pid) if p not in self._pid_starts]
        for p in new:
            self._pid_starts[p] = _proc_start(p)
        self.pids = list(self._pid_starts)
        _reaper.add(pids=new)

    def _alive_pids(self) -> list[int]:
        return [p for p, start in self._pid_starts.items() if pid_alive(p, start)]

    def stop_app(self) -> None:
        """Stop the rabbit application (closes every client connection; node, queues and
        messages stay). Use start_app() to bring it back."""
        self.ctl("stop_app")

    def start_app(self) -> None:
        """Start the rabbit application again; returns once it accepts connections."""
        self.ctl("start_app")

    def stop(self, quiet: bool = False) -> None:
        """Stop the node (rabbitmqctl stop), then epmd (epmd -port N -kill), then verify
        that none of the recorded processes is left; leftovers are killed and reported."""
        t0 = time.monotonic()
        problems = []
        if self.running:
            # helpers started since start() (inet_gethost, disk monitor...) count too
            self._record_pids()
            try:
                if self.pid_file.exists():
                    self.ctl("stop", str(self.pid_file), timeout=60)
                else:
                    self.ctl("stop", timeout=60)
            except (HarnessError, subprocess.TimeoutExpired) as exc:
                problems.append(f"rabbitmqctl stop failed: {exc}")
            try:  # the server script exits right after the VM
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            if _terminate(self._proc, grace=15):
                problems.append("rabbitmq-server needed SIGKILL")
        if self._epmd is not None:
            if self._epmd.poll() is None:
                subprocess.run(["epmd", "-port", str(self.epmd_port), "-kill"], env=self.env(),
                               stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
                if _terminate(self._epmd, grace=10):
                    problems.append("epmd needed SIGKILL")
            _reaper.remove(pgid=self._epmd.pid)
            _kill_group_leftovers(self._epmd.pid)
        if self._proc is not None:
            # beam's helper processes exit when they see the VM's pipes close
            deadline = time.monotonic() + 5
            while self._alive_pids() and time.monotonic() < deadline:
                time.sleep(0.05)
            left = self._alive_pids()
            left += [p for p in _kill_group_leftovers(self._proc.pid) if p not in left]
            for p in left:
                try:
                    os.kill(p, signal.SIGKILL)
                except OSError:
                    pass
            if left:
                problems.append(f"processes left after stop (killed): {left}")
            _reaper.remove(pgid=self._proc.pid, pids=self.pids)
        self._proc = None
        self._epmd = None
        self.pids = []
        self._pid_starts = {}
        _untrack(self)
        self.stop_seconds = time.monotonic() - t0
        if problems and not quiet:
            raise HarnessError(f"{self!r}: " + "; ".join(problems))

    def restart(self) -> "RabbitMQ":
        """Full stop and start on the same ports and data."""
        self.stop()
        return self.start()


# --------------------------------------------------------------------------- RabbitMQ cluster

class RabbitClusterNode(RabbitMQ):
    """One node of a RabbitCluster: its own name, ports, data and logs, but the cluster's
    epmd (nodes on one host find each other's distribution ports through one epmd) and
    the cluster's Erlang cookie."""

    def __init__(self, cluster: "RabbitCluster", run_dir, index: int) -> None:
        super().__init__(run_dir, epmd_port=cluster.epmd_port,
                         nodename=f"vc{cluster.epmd_port}n{index}@localhost")
        self.cluster = cluster
        self.index = index

    def __repr__(self) -> str:
        return f"RabbitClusterNode({self.nodename}, amqp={self.port})"

    def _start_epmd(self) -> None:
        self.cluster._start_epmd()

    def _prepare(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        cookie = self.home / ".erlang.cookie"
        if not cookie.exists():
            cookie.write_text(self.cluster.cookie)
            cookie.chmod(0o400)
        super()._prepare()

    def kill(self) -> None:
        """SIGKILL the node's whole process group (beam.smp and its helpers), as a crash
        would; its data stays, and start() brings it back into the cluster."""
        if self._proc is None:
            return
        try:
            os.killpg(self._proc.pid, signal.SIGKILL)
        except OSError:
            pass
        try:
            self._proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        self.stop(quiet=True)  # bookkeeping only: nothing of it runs any more


class RabbitCluster:
    """A RabbitMQ cluster of `size` nodes on 127.0.0.1 (all ports below 32768): one epmd,
    one Erlang cookie, nodes joined to the first with stop_app / join_cluster / start_app.

    `url` is the comma-separated list of the nodes' URLs, the AMQP_URL form the services
    take (shared/include/voter/amqp.h). `nodes[i]` are RabbitMQ objects (ctl, stop_app,
    start_app) with kill() (SIGKILL) and start() to bring a node back."""

    def __init__(self, run_dir, size: int = 3) -> None:
        self.run_dir = Path(run_dir)
        self.epmd_port = free_port()
        self.cookie = secrets.token_hex(16).upper()
        self.epmd_log = self.run_dir / "epmd.log"
        self._epmd: Optional[subprocess.Popen] = None
        self.nodes = [RabbitClusterNode(self, self.run_dir / f"node{i + 1}", i + 1)
                      for i in range(size)]
        self.start_seconds: Optional[float] = None

    def __repr__(self) -> str:
        return f"RabbitCluster({len(self.nodes)} nodes, epmd={self.epmd_port})"

    @property
    def url(self) -> str:
        return ",".join(n.url for n in self.nodes)

    @property
    def running(self) -> bool:
        return any(n.running for n in self.nodes)

    def env(self) -> dict:
        return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "ERL_EPMD_PORT": str(self.epmd_port),
                "ERL_EPMD_ADDRESS": "127.0.0.1", "HOME": str(self.run_dir)}

    def _start_epmd(self) -> None:
        _start_epmd(self)

    def start(self, timeout: float = 120) -> "RabbitCluster":
        """Start every node (in parallel: each takes 5-7 s), join the others to the first,
        and return once cluster_status lists them all as running."""
        t0 = time.monotonic()
        _track(self)
        self._start_epmd()
        errors: list[str] = []

        def boot(node):
            try:
                node.start(timeout=timeout)
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(f"{node!r}: {exc}")

        threads = [threading.Thread(target=boot, args=(n,)) for n in self.nodes]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            self.stop()
            raise HarnessError("cluster did not start:\n" + "\n".join(errors))
        first = self.nodes[0]
        for node in self.nodes[1:]:
            node.ctl("stop_app")
            node.ctl("join_cluster", first.nodename)
            node.ctl("start_app")
        self.wait_running(len(self.nodes), timeout=timeout)
        self.start_seconds = time.monotonic() - t0
        return self

    def running_nodes(self) -> list[str]:
        """Node names cluster_status reports as running, asked of the first live node."""
        for node in self.nodes:
            if not node.running:
                continue
            try:
                out = node.ctl("cluster_status", "--formatter", "json", timeout=30)
            except (HarnessError, subprocess.TimeoutExpired):
                continue
            try:
                return sorted(json.loads(out).get("running_nodes", []))
            except ValueError:
                continue
        return []

    def wait_running(self, count: int, timeout: float = 60) -> list[str]:
        wait_until(lambda: len(self.running_nodes()) == count, timeout=timeout, interval=0.5,
                   message=f"{count} running nodes in {self!r}")
        return self.running_nodes()

    def stop(self, quiet: bool = False) -> None:
        problems = []
        for node in reversed(self.nodes):
            try:
                node.stop(quiet=quiet)
            except HarnessError as exc:
                problems.append(str(exc))
        if self._epmd is not None:
            if self._epmd.poll() is None:
                subprocess.run(["epmd", "-port", str(self.epmd_port), "-kill"], env=self.env(),
                               stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
                if _terminate(self._epmd, grace=10):
                    problems.append("epmd needed SIGKILL")
            _reaper.remove(pgid=self._epmd.pid)
            _kill_group_leftovers(self._epmd.pid)
            self._epmd = None
        _untrack(self)
        if problems and not quiet:
            raise HarnessError(f"{self!r}: " + "; ".join(problems))


# --------------------------------------------------------------------------- PostgreSQL

PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_INIT_SQL = REPO_ROOT / "scripts" / "postgresql-init.sql"
# Server settings shared with scripts/stack (see docs/design.md, "Local database").
# glibc's allocator gave each large statement's memory back to the kernel and faulted it
# in again on the next (a bulk insert of 2,000 documents: ~1 minor fault per document);
# keeping up to 32 MiB per backend cut PostgreSQL's CPU per inserted document by a
# quarter to a third (docs/design.md, "Bulk ingestion"; scripts/stack sets the same).
PG_MALLOC = "glibc.malloc.mmap_threshold=16777216:glibc.malloc.trim_threshold=33554432"
PG_SETTINGS = ("plan_cache_mode=force_custom_plan", "synchronous_commit=off",
               "shared_buffers=128MB", "max_connections=200", "jit=off",
               "max_parallel_workers_per_gather=0")


def database_backend() -> str:
    """FerretDB's storage: $VOTER_DB (postgresql or sqlite), default postgresql, as in
    scripts/stack (docs/design.md, "Local database")."""
    backend = os.environ.get("VOTER_DB", "postgresql")
    if backend not in ("postgresql", "sqlite"):
        raise HarnessError(f"VOTER_DB must be postgresql or sqlite, not {backend!r}")
    return backend


# FerretDB keeps this many PostgreSQL connections open (pgxpool's pool_min_conns). Each
# statement of an update command holds one until the command ends (voter/src/votes.c,
# shared/include/voter/mongo.h), and a connection opened on demand costs a request
# 10-80 ms: with FerretDB's default (none kept) the first votes after a quiet spell stalled.
FERRETDB_PG_POOL_MIN = 16

# At most this many (pgxpool's pool_max_conns; FerretDB's default is 50, PostgreSQL here
# allows 200). Update commands of several statements hold one connection per statement
# until they end, so a few at once exhaust 50 and FerretDB hangs for every client: seven
# concurrent commands of 8 statements did (shared/include/voter/mongo.h, docs/design.md).
FERRETDB_PG_POOL_MAX = 160

# FerretDB is a Go program; with Go's default (GOGC=100) a third of its CPU went to its
# garbage collector during bulk ingestion. Collecting at 4x the live heap instead of 2x,
# capped by a soft limit, gives that CPU to the database work (docs/design.md, "Bulk
# ingestion"; scripts/stack sets the same).
FERRETDB_GO_ENV = {"GOGC": "400", "GOMEMLIMIT": "512MiB"}


class PostgreSQL:
    """A private PostgreSQL 15 cluster (initdb) on 127.0.0.1 for FerretDB's postgresql
    handler. The server refuses to run as root: as root it runs as the `postgres` user
    (setpriv, so the recorded pid is the postmaster's own)."""

    def __init__(self, run_dir, port: Optional[int] = None) -> None:
        self.run_dir = Path(run_dir)
        self.port = port or free_port()
        self.data_dir = self.run_dir / "data"
        self.log_path = self.run_dir / "postgresql.log"
        self._proc: Optional[subprocess.Popen] = None

    def __repr__(self) -> str:
        return f"PostgreSQL(port={self.port})"

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/voter"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _as_server_user(self, argv: list) -> list:
        if os.geteuid() != 0:
            return argv
        return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups"] + argv

    def _init(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.run_dir, "postgres", "postgres")
            for d in self.run_dir.parents:  # let the server user reach its directory
                if not d.stat().st_mode & 0o001:
                    d.chmod(d.stat().st_mode | 0o011)
        out = subprocess.run(self._as_server_user(
            [PG_BIN / "initdb", "-D", self.data_dir, "-U", "postgres", "--auth=trust",
             "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"]), capture_output=True, text=True)
        if out.returncode != 0:
            raise HarnessError(f"initdb failed:\n{out.stdout}{out.stderr}")

    def start(self, timeout: float = 60) -> "PostgreSQL":
        if self.running:
            return self
        fresh = not (self.data_dir / "PG_VERSION").exists()
        if fresh:
            self._init()
        _track(self)
        argv = [PG_BIN / "postgres", "-D", self.data_dir, "-p", self.port, "-h", "127.0.0.1",
                "-k", self.run_dir]
        for setting in PG_SETTINGS:
            argv += ["-c", setting]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "GLIBC_TUNABLES": PG_MALLOC}
        self._proc = _spawn(self._as_server_user(argv), env, self.log_path)
        ready = lambda: subprocess.run([PG_BIN / "pg_isready", "-q", "-h", self.run_dir, "-p",
                                        str(self.port)]).returncode == 0
        try:
            wait_until(lambda: ready() or (self._proc.poll() is not None), timeout=timeout,
                       interval=0.1, message="PostgreSQL ready")
        except Exception as exc:
            self.stop()
            raise HarnessError(f"PostgreSQL not ready: {exc}\n{_tail(self.log_path)}") from None
        if self._proc.poll() is not None:
            code = self._proc.returncode
            self.stop()
            raise HarnessError(f"PostgreSQL exited ({code}) during start:\n{_tail(self.log_path)}")
        if fresh:
            out = subprocess.run([PG_BIN / "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", self.run_dir,
                                  "-p", str(self.port), "-U", "postgres", "-d", "postgres",
                                  "-f", PG_INIT_SQL], capture_output=True, text=True)
            if out.returncode != 0:
                self.stop()
                raise HarnessError(f"{PG_INIT_SQL.name} failed:\n{out.stdout}{out.stderr}")
        return self

    def processes(self) -> list[int]:
        """The postmaster and its children. The children are not in its process group:
        PostgreSQL starts each in a session of its own (setsid)."""
        if not self.running:
            return []
        return [self._proc.pid] + _children(self._proc.pid)

    def stop(self) -> None:
        """Fast shutdown (SIGINT: clients are disconnected), SIGKILL after 30 s."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGINT)
            try:
                self._proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=30)
        if self._proc is not None:
            _reaper.remove(pgid=self._proc.pid)
            _kill_group_leftovers(self._proc.pid)
        self._proc = None
        _untrack(self)


# --------------------------------------------------------------------------- FerretDB

class FerretDB:
    """FerretDB on 127.0.0.1, data and state under run_dir, storing in a private
    PostgreSQL (backend "postgresql", started and stopped with it) or in SQLite files
    (backend "sqlite"); default: database_backend()."""

    def __init__(self, run_dir, port: Optional[int] = None, debug_port: Optional[int] = None,
                 binary_path=None, backend: Optional[str] = None) -> None:
        self.run_dir = Path(run_dir)
        self.backend = backend or database_backend()
        self.postgresql = PostgreSQL(self.run_dir / "postgresql") if self.backend == "postgresql" else None
        self.port = port or free_port()
        self.debug_port = debug_port or free_port()
        self.binary = Path(binary_path) if binary_path else ferretdb_binary()
        self.data_dir = self.run_dir / "data"
        self.log_path = self.run_dir / "ferretdb.log"
        self._proc: Optional[subprocess.Popen] = None
        self.start_seconds: Optional[float] = None
        self.stop_seconds: Optional[float] = None

    def __repr__(self) -> str:
        return f"FerretDB(port={self.port})"

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> Optional[int]:
        return self._proc.pid if self._proc else None

    def argv(self) -> list:
        if self.postgresql:
            # pool_min_conns, pool_max_conns: FERRETDB_PG_POOL_MIN, _MAX above
            storage = ["--handler=postgresql",
                       f"--postgresql-url={self.postgresql.url}?pool_min_conns={FERRETDB_PG_POOL_MIN}"
                       f"&pool_max_conns={FERRETDB_PG_POOL_MAX}"]
        else:
            storage = ["--handler=sqlite", f"--sqlite-url=file:{self.data_dir}/"]
        return [self.binary, *storage,
                f"--listen-addr=127.0.0.1:{self.port}", f"--debug-addr=127.0.0.1:{self.debug_port}",
                f"--state-dir={self.data_dir}", "--telemetry=disable", "--log-level=warn"]

    def ping(self, timeout_ms: int = 500) -> bool:
        import pymongo  # Debian's python3-pymongo

        client = pymongo.MongoClient(self.uri, directConnection=True,
                                     serverSelectionTimeoutMS=timeout_ms,
                                     connectTimeoutMS=timeout_ms)
        try:
            client.admin.command("ping")
            return True
        finally:
            client.close()

    def start(self, timeout: float = 30) -> "FerretDB":
        if self.running:
            return self
        t0 = time.monotonic()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.postgresql:
            self.postgresql.start()
        _track(self)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.run_dir), **FERRETDB_GO_ENV}
        self._proc = _spawn(self.argv(), env, self.log_path)
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self.stop()
                raise HarnessError(f"FerretDB exited ({code}) during start:\n{_tail(self.log_path)}")
            if port_open(self.port, timeout=0.2):
                try:
                    if self.ping():
                        break
                except Exception:  # noqa: BLE001 - not ready yet
                    pass
            if time.monotonic() > deadline:
                log = _tail(self.log_path)
                self.kill()
                raise HarnessError(f"FerretDB not ready on {self.uri} after {timeout}s:\n{log}")
            time.sleep(0.05)
        self.start_seconds = time.monotonic() - t0
        return self

    def _finish(self) -> None:
        if self._proc is not None:
            _reaper.remove(pgid=self._proc.pid)
            _kill_group_leftovers(self._proc.pid)
        self._proc = None
        _untrack(self)

    def stop(self) -> None:
        """SIGTERM (graceful), SIGKILL after 15 s (reported as an error)."""
        t0 = time.monotonic()
        killed = self._proc is not None and _terminate(self._proc, grace=15)
        self._finish()
        if self.postgresql:
            self.postgresql.stop()
        self.stop_seconds = time.monotonic() - t0
        if killed:
            raise HarnessError("FerretDB did not exit within 15 s of SIGTERM (killed)")

    def kill(self) -> None:
        """SIGKILL, for database-outage tests; start() brings it back on the same port/data."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(timeout=30)
        self._finish()

    def restart(self) -> "FerretDB":
        self.stop()
        return self.start()


# --------------------------------------------------------------------------- services

SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "UndefinedBehaviorSanitizer", "AddressSanitizer:DEADLYSIGNAL")


class Service:
    """One service process (a C executable) listening on HTTP_PORT from env."""

    def __init__(self, name: str, binary_path, env: dict, ready_path: str, log_path) -> None:
        self.name = name
        self.binary = Path(binary_path)
        self.extra_env = dict(env)
        self.ready_path = ready_path if ready_path.startswith("/") else "/" + ready_path
        self.log_path = Path(log_path)
        if "HTTP_PORT" not in self.extra_env:
            raise HarnessError(f"service {name}: env must contain HTTP_PORT")
        self.port = int(self.extra_env["HTTP_PORT"])
        self.host = self.extra_env.get("HTTP_HOST", "127.0.0.1")
        self._proc: Optional[subprocess.Popen] = None
        self.returncode: Optional[int] = None
        self.starts = 0

    def __repr__(self) -> str:
        return f"Service({self.name}, port={self.port})"

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}"

    @property
    def pid(self) -> Optional[int]:
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def env(self) -> dict:
        env = {k: os.environ[k] for k in SERVICE_INHERITED_ENV if k in os.environ}
        env.setdefault("PATH", "/usr/bin:/bin")
        for key, value in SANITIZER_DEFAULTS.items():
            env[key] = os.environ.get(key, value)
        env.update({k: str(v) for k, v in self.extra_env.items()})
        return env

    def start(self) -> "Service":
        if self.running:
            return self
        if not self.binary.exists():
            raise HarnessError(f"service {self.name}: binary {self.binary} not found "
                               f"(build it, or set VOTER_BUILD_DIR; build dir is {build_dir()})")
        self.returncode = None
        self.starts += 1
        if self.starts > 1:
            with open(self.log_path, "ab") as f:
                f.write(f"\n--- harness: restart #{self.starts - 1} of {self.name} ---\n".encode())
        _track(self)
        self._proc = _spawn([self.binary], self.env(), self.log_path)
        return self

    def wait_ready(self, timeout: float = 30) -> "Service":
        import requests  # Debian's python3-requests

        url = self.url + self.ready_path
        deadline = time.monotonic() + timeout
        last = "no answer"
        with requests.Session() as http:
            while True:
                if self._proc is None or self._proc.poll() is not None:
                    code = None if self._proc is None else self._proc.returncode
                    raise HarnessError(f"service {self.name} exited ({code}) before it was ready:\n"
                                       f"{self.log_tail()}")
                try:
                    r = http.get(url, timeout=2)
                    if r.status_code == 200:
                        return self
                    last = f"HTTP {r.status_code}: {r.text[:200]}"
                except requests.RequestException as exc:
                    last = f"{type(exc).__name__}"
                if time.monotonic() > deadline:
                    raise HarnessError(f"service {self.name} not ready at {url} after {timeout}s "
                                       f"({last}):\n{self.log_tail()}")
                time.sleep(0.05)

    def _finish(self) -> None:
        if self._proc is not None:
            self.returncode = self._proc.returncode
            _reaper.remove(pgid=self._proc.pid)
            _kill_group_leftovers(self._proc.pid)
        self._proc = None
        _untrack(self)

    def stop(self, grace: float = 15) -> Optional[int]:
        """SIGTERM and wait; SIGKILL after `grace` seconds, which raises HarnessError.
        Returns the exit code (None if it was not running)."""
        if self._proc is None:
            return None
        killed = _terminate(self._proc, grace=grace)
        self._finish()
        if killed:
            raise HarnessError(f"service {self.name} did not exit within {grace:g}s of SIGTERM "
                               f"(killed):\n{self.log_tail()}")
        return self.returncode

    def kill(self) -> None:
        """SIGKILL (crash simulation)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(timeout=30)
        self._finish()

    def restart(self, wait: bool = True, timeout: float = 30) -> "Service":
        self.stop()
        self.start()
        return self.wait_ready(timeout) if wait else self

    def log_lines(self) -> list[str]:
        try:
            return self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return []

    def log_tail(self, lines: int = 40) -> str:
        return _tail(self.log_path, lines)

    def sanitizer_report(self) -> Optional[str]:
        """Every AddressSanitizer / LeakSanitizer / UBSan ("runtime error:") report in the
        log, each from its first line to its SUMMARY line (at most 200 lines in all),
        or None when the log has none."""
        lines = self.log_lines()
        blocks: list[str] = []
        i = 0
        while i < len(lines) and sum(b.count("\n") + 1 for b in blocks) < 200:
            if any(m in lines[i] for m in SANITIZER_MARKERS):
                start = i - 1 if i > 0 and lines[i - 1].startswith("==") else i
                end = i
                while end < len(lines) and end - start < 120:
                    if lines[end].startswith("SUMMARY:"):
                        break
                    end += 1
                blocks.append("\n".join(lines[start:end + 1]))
                i = end + 1
            else:
                i += 1
        return "\n\n".join(blocks) if blocks else None


# --------------------------------------------------------------------------- gateway proof

def proof(method: str, path: str, consumer: str = "", scopes: str = ADMIN_SCOPES,
          t: Optional[int] = None, secret: str = PROOF_SECRET) -> str:
    """The X-Gateway-Proof value the gateway would send (shared/include/voter/proof.h):
    t=<unix seconds>,sig=HMAC-SHA256(secret, METHOD\nPATH\nt\nCONSUMER\nSCOPES) in hex."""
    t = int(time.time()) if t is None else t
    msg = "\n".join([method, path, str(t), consumer, scopes]).encode()
    sig = hmac.new(secret.encode(), msg, hashlib.sha256).hexdigest()
    return f"t={t},sig={sig}"


def proof_headers(method: str, path: str, consumer: str = "", scopes: str = ADMIN_SCOPES,
                  t: Optional[int] = None, secret: str = PROOF_SECRET) -> dict:
    """The three headers the gateway sends upstream for a caller, signed for method and path
    (the path exactly as the service receives it, without the query)."""
    return {"X-Consumer-ID": consumer, "X-Consumer-Scopes": scopes,
            "X-Gateway-Proof": proof(method, path, consumer, scopes, t, secret)}


def caller_headers(method: str, url: str, consumer: str, scopes: str = "read vote write") -> dict:
    """The identity headers the gateway sends for a keyed caller's request to url, signed
    (a service believes X-Consumer-ID only under the proof)."""
    from urllib.parse import urlsplit

    return proof_headers(method, urlsplit(url).path or "/", consumer, scopes)


def admin_request(method: str, url: str, consumer: str = "", scopes: str = ADMIN_SCOPES,
                  headers: Optional[dict] = None, **kwargs):
    """requests.request(method, url, ...) sent straight to a service as the gateway would
    send an admin caller's request: the path is taken from the prepared request (what
    goes on the wire, after requests' own quoting) and signed with PROOF_SECRET."""
    import requests  # Debian's python3-requests
    from urllib.parse import urlsplit

    timeout = kwargs.pop("timeout", 30)
    prepared = requests.Request(method, url, headers=dict(headers or {}), **kwargs).prepare()
    path = urlsplit(prepared.url).path or "/"
    prepared.headers.update(proof_headers(method, path, consumer, scopes))
    with requests.Session() as session:
        return session.send(prepared, timeout=timeout)


# --------------------------------------------------------------------------- replicas behind the gateway

def replica_gateway_config(upstreams: dict, path, keys_file=None, access_log: bool = True) -> Path:
    """Writes a gateway configuration to path: gateway/gateway.example.json (its rules,
    tiers and scopes) with every route of each service in upstreams sent to that service's
    list of replicas, e.g. {"voter": [v1.url, v2.url]}, and only those services' routes
    kept. keys_file: GATEWAY_KEYS_FILE's JSON ({key: tier}) as the file the gateway reads
    (None: the example's ${GATEWAY_KEYS_FILE}). Start the gateway with
    GATEWAY_CONFIG=<path> (HTTP_PORT overrides the listen port). Replicas of one service
    share its database (service_factory names it after the service) and a voter replica
    needs its own VOTER_INSTANCE (its tally shard)."""
    import json

    conf = json.loads((REPO_ROOT / "gateway" / "gateway.example.json").read_text())
    conf["openapi"] = str(REPO_ROOT / "docs" / "openapi.json")
    conf["access_log"] = access_log
    if keys_file is not None:
        conf["keys_file"] = str(keys_file)
    routes = []
    for route in conf["routes"]:
        service = route["prefix"].strip("/").split("/")[0]
        if service in upstreams:
            route["upstreams"] = [u.removeprefix("http://") for u in upstreams[service]]
            routes.append(route)
    conf["routes"] = routes
    path = Path(path)
    path.write_text(json.dumps(conf, indent=2))
    return path


# --------------------------------------------------------------------------- CLI

def _stop_group(proc: subprocess.Popen, grace: float) -> None:
    """SIGTERM the process group led by proc, SIGKILL what is left after grace seconds."""
    pgid = proc.pid
    exited = proc.poll() is not None
    members = _group_members(pgid)
    if exited and members:
        print(f"harness: the command left processes behind, stopping them: {members}", file=sys.stderr)
    try:
        os.killpg(pgid, signal.SIGTERM)
    except OSError:
        pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        proc.poll()
        if not _group_members(pgid):
            break
        time.sleep(0.05)
    left = _kill_group_leftovers(pgid)
    if left:
        print(f"harness: killed processes left by the command: {left}", file=sys.stderr)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


def _with_deps(args: argparse.Namespace) -> int:
    cmd = args.cmd
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        print("harness: with-deps needs a command after --", file=sys.stderr)
        return 2
    run_dir = make_run_dir("voter-deps-")
    env = dict(os.environ)
    env["VOTER_RUN_DIR"] = str(run_dir)
    ok = False
    code = 1
    child: Optional[subprocess.Popen] = None

    def on_term(signum, frame):  # turn SIGTERM/SIGHUP into an exception so finally runs
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)
    try:
        if not args.no_rabbit:
            rabbit = RabbitMQ(run_dir / "rabbitmq").start()
            env["AMQP_URL"] = rabbit.url
            print(f"harness: RabbitMQ {rabbit.url} ready in {rabbit.start_seconds:.1f}s", file=sys.stderr)
        if not args.no_mongo:
            mongo = FerretDB(run_dir / "ferretdb").start()
            env["MONGODB_URI"] = mongo.uri
            print(f"harness: FerretDB ({mongo.backend}) {mongo.uri} ready in {mongo.start_seconds:.1f}s",
                  file=sys.stderr)
        # own process group: on exit/interrupt the whole group is stopped, so
        # nothing CMD started outlives the run
        child = subprocess.Popen(cmd, env=env, process_group=0)
        _reaper.add(pgid=child.pid)
        code = child.wait()
        if code < 0:
            code = 128 - code
        ok = code == 0
    except KeyboardInterrupt:
        print("harness: interrupted", file=sys.stderr)
        code = 130
    except HarnessError as exc:
        print(f"harness: {exc}", file=sys.stderr)
        code = 1
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if child is not None:
            _stop_group(child, grace=10)
            _reaper.remove(pgid=child.pid)
        errors = stop_all()
        if errors:
            ok = False
            code = code or 1
        if ok:
            remove_run_dir(run_dir)
        else:
            print(f"harness: run directory kept: {run_dir}", file=sys.stderr)
    return code


def main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(prog="harness.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    wd = sub.add_parser("with-deps", help="run CMD with private RabbitMQ and FerretDB")
    wd.add_argument("--no-rabbit", action="store_true", help="do not start RabbitMQ")
    wd.add_argument("--no-mongo", action="store_true", help="do not start FerretDB")
    wd.add_argument("cmd", nargs=argparse.REMAINDER, help="-- CMD ARGS...")
    args = parser.parse_args(argv)
    if args.command == "with-deps":
        return _with_deps(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
