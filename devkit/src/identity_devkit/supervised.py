"""A child process the tests and the dev stacks start and must stop: its work directory, its log
file, its stop (SIGTERM, then SIGKILL), and an ``atexit`` hook that stops whatever is still
running. ``envoy_runner.Envoy`` and ``oidc_provider.OidcProvider`` (tools/) and the Prefect and
Airflow harness's :class:`identity_devkit.testing.Process` are built on it. Standard library only.

A subclass starts its process with :meth:`Supervised._spawn` after :meth:`Supervised._workdir_for_start`
and reads its own readiness; everything else (``stop``, ``running``, the log, the context
manager, ``remove_workdir``) is here.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import IO, Any, Mapping, Sequence

_RUNNING: set["Supervised"] = set()
#: Work directories made by supervised processes started without a ``workdir``, in order (the
#: integration tests remove those of a session without failures).
CREATED_WORKDIRS: list[Path] = []


def stop_all() -> None:
    """Stop every supervised process still running."""
    for process in list(_RUNNING):
        process.stop()


atexit.register(stop_all)

try:
    _LIBC: Any = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
except OSError:
    _LIBC = None


def _die_with_parent() -> None:
    """Runs in the child between fork and exec: ask Linux to SIGTERM it when the thread that
    started it dies (so a killed test run leaks no process). Used only from the main thread:
    Linux ties this to the forking thread, not the process."""
    if _LIBC is not None:
        _LIBC.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Supervised:
    """One child process with a work directory and a log file.

    ``name`` prefixes a fresh work directory under ``default_root`` unless ``workdir`` is given
    (then it is used as is and never removed). ``error`` is the exception type this kind of
    process raises; ``stop_timeout`` the seconds between SIGTERM and SIGKILL.
    """

    error: type[Exception] = RuntimeError
    stop_timeout: float = 10.0
    #: Signal the whole process group (the session the child leads), not only the child: for
    #: servers whose own children (e.g. flow-run processes) may outlive them.
    stop_group: bool = False

    def __init__(self, name: str, workdir: str | Path | None, default_root: Path):
        self.name = name
        self._workdir_arg = workdir
        self._default_root = default_root
        self.workdir: Path | None = None
        self.log_path: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    # -- for subclasses ---------------------------------------------------------------------

    def _workdir_for_start(self) -> Path:
        """The work directory, made now: the given one, or a fresh one under the default root."""
        if self.proc is not None:
            raise self.error("already started")
        if self._workdir_arg is not None:
            self.workdir = Path(self._workdir_arg)
            self.workdir.mkdir(parents=True, exist_ok=True)
        else:
            self._default_root.mkdir(parents=True, exist_ok=True)
            self.workdir = Path(tempfile.mkdtemp(prefix=f"{self.name}-", dir=self._default_root))
            CREATED_WORKDIRS.append(self.workdir)
        return self.workdir

    def _spawn(self, cmd: Sequence[str], *, log_name: str, cwd: Path | None, stdin: Any = subprocess.DEVNULL,
               stdout: Any = None, env: Mapping[str, str] | None = None,
               append: bool = False) -> subprocess.Popen[bytes]:
        """Start ``cmd`` in its own session with stderr (and stdout unless given) to the log
        (``append``: after what the log already holds). ``env``: the whole environment."""
        assert self.workdir is not None
        self.log_path = self.workdir / log_name
        self._log_file = open(self.log_path, "ab" if append else "wb")  # noqa: SIM115 (closed by stop)
        main = threading.current_thread() is threading.main_thread()
        self.proc = subprocess.Popen(list(cmd), stdin=stdin,
                                     stdout=self._log_file if stdout is None else stdout,
                                     stderr=self._log_file if stdout is None else self._log_file,
                                     start_new_session=True,
                                     env=None if env is None else dict(env),
                                     preexec_fn=_die_with_parent if main else None,
                                     cwd=None if cwd is None else str(cwd))
        _RUNNING.add(self)
        return self.proc

    # -- lifecycle ----------------------------------------------------------------------------

    def stop(self, timeout: float | None = None) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds. Idempotent. Returns the exit status."""
        code = None
        if self.proc is not None:
            if self.proc.poll() is None:
                self._signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=self.stop_timeout if timeout is None else timeout)
                except subprocess.TimeoutExpired:
                    self._signal(signal.SIGKILL)
                    self.proc.wait(timeout=10)
            if self.stop_group:
                # Children may outlive the leader: kill what is left of the group anyway.
                self._signal(signal.SIGKILL)
            for stream in (self.proc.stdin, self.proc.stdout):
                if stream is not None:
                    stream.close()
            code = self.proc.returncode
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        _RUNNING.discard(self)
        return code

    def _signal(self, sig: int) -> None:
        assert self.proc is not None
        if not self.stop_group:
            if self.proc.poll() is None:
                self.proc.send_signal(sig)
            return
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def remove_workdir(self) -> None:
        """Delete the work directory (configuration and log) if this object made it. Call after
        ``stop()``."""
        if self.running:
            raise self.error(f"stop {self.name} first")
        if self.workdir is not None and self._workdir_arg is None:
            shutil.rmtree(self.workdir, ignore_errors=True)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def start(self) -> Any:  # pragma: no cover - every subclass has its own
        raise NotImplementedError

    # -- the log --------------------------------------------------------------------------------

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def _tail_note(self) -> str:
        tail = self.log_tail()
        return f"\n--- {self.log_path} (last lines) ---\n{tail}" if tail else ""
