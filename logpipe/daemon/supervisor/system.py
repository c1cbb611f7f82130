"""The supervisor's dealings with the operating system: niceness, pipe sizes, privileges, fds.

All of it runs once at start (before the first worker is forked) or is a
small fd helper; none of it may raise into the loop.  The facts behind each
choice are in reference/apache-piped-logs.md: the logger runs as root and
inherits httpd's environment, so privileges are dropped to ``--user`` after
what needs root is done (the status directory, the niceness, libc's prctl).
"""

from __future__ import annotations

import fcntl
import os
import stat
from typing import Callable, Optional

from logpipe.config import Settings

__all__ = ["set_nice", "set_pipe_size", "prepare_status_dir_and_user", "load_prctl", "prctl",
           "close_fd", "drain_fd", "PR_SET_PDEATHSIG"]

_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)  # Python >= 3.10 names them
_F_GETPIPE_SZ = getattr(fcntl, "F_GETPIPE_SZ", 1032)
#: prctl(2) option: the signal a child gets when its parent dies.
PR_SET_PDEATHSIG = 1


def set_nice(want: int) -> Optional[int]:
    """Set this process's niceness to *want* (-20..19) where allowed; return the one it has.

    ``--nice`` (default -5): the supervisor drains Apache's pipe and the
    worker (which inherits it) counts; their CPU is bounded by the log's
    bytes, and at Apache's priority a worker on a saturated machine waits for
    the CPU it needs and counts arrive late (README, "Performance").  Only
    root may lower the niceness; unprivileged, the current one is kept.
    """
    try:
        os.setpriority(os.PRIO_PROCESS, 0, want)
    except OSError:
        pass
    try:
        return os.getpriority(os.PRIO_PROCESS, 0)
    except OSError:  # pragma: no cover
        return None


def set_pipe_size(fd: int, want: int) -> Optional[int]:
    """Raise the capacity of the pipe *fd* to *want* bytes if it is smaller; return the capacity.

    Unprivileged processes are capped at ``/proc/sys/fs/pipe-max-size`` (fcntl(2)); on EPERM
    the cap is tried instead.  The pipe is never shrunk.

    Returns:
        the capacity in bytes after the attempt, or ``None`` when *fd* is not a pipe (a
        file, a terminal, a socket) or the capacity cannot be read.  Never raises.
    """
    try:
        if not stat.S_ISFIFO(os.fstat(fd).st_mode):
            return None
        current = fcntl.fcntl(fd, _F_GETPIPE_SZ)
    except (OSError, ValueError):
        return None
    if want > current:
        try:
            fcntl.fcntl(fd, _F_SETPIPE_SZ, want)
        except (OSError, OverflowError, ValueError):
            try:
                with open("/proc/sys/fs/pipe-max-size", "rb") as handle:
                    cap = int(handle.read())
                if current < cap < want:
                    fcntl.fcntl(fd, _F_SETPIPE_SZ, cap)
            except (OSError, ValueError, OverflowError):
                pass
    try:
        return fcntl.fcntl(fd, _F_GETPIPE_SZ)
    except OSError:
        return None


def prepare_status_dir_and_user(settings: Settings) -> tuple[bool, list[str]]:
    """Create ``--status-dir`` (0755, owned by ``--user``), then drop privileges to ``--user``.

    The directory is made (and chowned) while still root, so the status files can be
    written after the switch.  Run as root without ``--user``, privileges are kept (and
    said).  Never raises.

    Returns:
        (the status directory is usable, warnings to print after the quiet start).
    """
    messages: list[str] = []
    uid = gid = None
    username = settings.user
    if username:
        try:
            import grp
            import pwd

            pw = pwd.getpwnam(username)
            uid, gid = pw.pw_uid, pw.pw_gid
            if settings.group:
                gid = grp.getgrnam(settings.group).gr_gid
        except (KeyError, ImportError) as exc:
            messages.append(f"unknown --user/--group ({exc}); not switching user")
            uid = gid = None
    elif settings.group:
        messages.append("--group is ignored without --user")
    usable = True
    directory = settings.status_dir
    if directory:
        created = False
        try:
            if not os.path.isdir(directory):
                os.makedirs(directory, mode=0o755, exist_ok=True)
                created = True
                os.chmod(directory, 0o755)  # makedirs' mode is filtered by the umask
            if created and uid is not None and os.geteuid() == 0:
                os.chown(directory, uid, gid)
        except OSError as exc:
            messages.append(f"status directory {directory}: {exc.strerror or exc}; "
                            "no status file")
            usable = False
    if os.geteuid() != 0:
        if uid is not None and uid != os.geteuid():
            messages.append(f"--user {username} ignored: not running as root")
        return usable, messages
    if uid is None:
        if not username:
            messages.append("running as root; set --user to drop privileges")
        return usable, messages
    try:
        os.initgroups(username, gid)
        os.setgid(gid)
        os.setuid(uid)
    except OSError as exc:
        messages.append(f"cannot switch to user {username}: {exc.strerror or exc}; "
                        "still running as root")
    return usable, messages


prctl: Optional[Callable[..., int]] = None
_prctl_loaded = False


def load_prctl() -> Optional[Callable[..., int]]:
    """libc's prctl, looked up once in the supervisor (the forked child must import nothing,
    and after ``--user`` the Python install may be unreadable).  None when not Linux: the
    worker then checks its parent instead."""
    global prctl, _prctl_loaded
    if not _prctl_loaded:
        _prctl_loaded = True
        try:
            import ctypes

            prctl = ctypes.CDLL(None, use_errno=True).prctl
        except (ImportError, OSError, AttributeError):
            prctl = None
    return prctl


def close_fd(fd: Optional[int]) -> None:
    """Close *fd* if it is one (>= 0); errors are ignored."""
    if fd is not None and fd >= 0:
        try:
            os.close(fd)
        except OSError:
            pass


def drain_fd(fd: int) -> None:
    """Read a non-blocking *fd* until it is empty (the signal wake-up pipe)."""
    try:
        while os.read(fd, 4096):
            pass
    except OSError:
        pass
