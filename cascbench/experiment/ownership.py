"""Who is working on what: an owner token per call ("host:pid:token"), and whether a token's
process is gone. Run locks (store.py) and tuning trials (tune.py) both record one, so that work
left by a killed process is taken over and work of a live one is never done twice."""

from __future__ import annotations

import os
import socket
import uuid


def new_owner() -> str:
    """A token for one call of this process: "host:pid:random"."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def owner_host(owner: str) -> str:
    """The machine an owner token names ("" for a token that names none)."""
    return owner.partition(":")[0]


def owner_is_gone(owner: str, me: str) -> bool:
    """The process behind `owner` is known to be gone: it ran on this machine and its pid no
    longer exists, or it is this process under an earlier call's token (that call returned).
    An owner on another machine is never known to be gone from here."""
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if owner == me or host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    return pid == os.getpid() or not _alive(pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    return True
