"""The heavy part of a delta apply, run in a child process so the desk's searches keep the GIL and a core.

Building a segment (``library.segment.build_segment``: reading the delta's rows, the tombstones, the
segment's HNSW, the digest pass over every part, writing and renaming the encrypted file) is mostly
Python loops. Run in the desk's own process they held the GIL against the search threads: search p99
went from 2.5 ms to 20 ms during an apply at 200k records. Here it runs in ``python -m
library.apply_process`` at low CPU priority (``SCHED_BATCH``, nice 19, one index thread), and the desk
only opens the small finished segment (once) and moves the pointer.

``SCHED_BATCH`` rather than compaction's ``SCHED_IDLE``: an apply is waited for (the desk should be on the
new version within seconds), and an idle-class task can be starved indefinitely on a busy desk; at nice 19
it still yields the CPU to searches whenever they want it.

Protocol, one JSON object per line:

- parent -> child (stdin): the request ``{"key", "chain", "delta", "target", "index_threads"}``; the key
  travels on the pipe, never the command line or the environment (other users can read both).
- child -> parent (stdout): ``{"stage": name}`` at each step of ``build_segment`` ("copied", "rows",
  "index", "written", "renamed"), then waits for the parent's ``go`` line, so the parent's ``on_stage``
  test seam runs at the same point as when the apply was in-process (a test can kill either process
  there); finally ``{"done": DeltaInfo}`` or ``{"error": class name, "message": text}``.

The child dies with the parent (``PR_SET_PDEATHSIG``) and exits at once if the pipe closes, so a killed
desk never leaves a child that goes on to rename a segment; the next store open removes whatever it left.
A child that stops without a result is a plain ``DeltaApplyError`` in the parent, never a silent success.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import IO

from library import errors
from library.delta import APPLYING_SUFFIX, DeltaInfo, StageHook
from library.errors import DeltaApplyError

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
# Errors the child may report by name; anything else becomes a DeltaApplyError with its message.
_REPORTED = {cls.__name__: cls for cls in (errors.SnapshotError, errors.SnapshotKeyError, errors.DeltaError,
                                           errors.DeltaBaseMismatchError, errors.DeltaResultMismatchError,
                                           errors.EmbedderMismatchError)}


class SegmentBuild:
    """One segment being built by a child process; ``wait`` relays its stages and returns the delta's info."""

    def __init__(self, chain: list[Path], delta: Path, key: bytes, target: Path, *, index_threads: int = 1) -> None:
        self.target = Path(target)
        self.process = subprocess.Popen([sys.executable, "-m", "library.apply_process"], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, cwd=Path(__file__).resolve().parents[1])
        request = {"key": key.hex(), "chain": [str(p) for p in chain], "delta": str(delta),
                   "target": str(target), "index_threads": index_threads}
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(json.dumps(request).encode() + b"\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            pass  # the child died at once: wait() reports it

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait(self, on_stage: StageHook | None = None) -> DeltaInfo:
        """Relay the child's stages to ``on_stage`` and return its result; raise its error, or a
        ``DeltaApplyError`` when it stopped without one. On any failure nothing it built is left on disk."""
        stage = on_stage or (lambda _name: None)
        assert self.process.stdin is not None and self.process.stdout is not None
        try:
            result = self._relay(self.process.stdin, self.process.stdout, stage)
        except BaseException:
            self.process.kill()
            self.process.wait()
            self._discard()
            raise
        finally:
            with contextlib.suppress(BrokenPipeError):
                self.process.stdin.close()
            self.process.stdout.close()
        code = self.process.wait()
        if result is None or code != 0:
            self._discard()
            how = f"was killed by signal {-code}" if code < 0 else f"stopped with exit code {code}"
            raise DeltaApplyError(f"The process applying the update {how} before it finished. The update was not "
                                  f"installed; the installed library stays in use.")
        if "error" in result:
            self._discard()
            cls = _REPORTED.get(str(result["error"]), DeltaApplyError)
            raise cls(str(result["message"]))
        return DeltaInfo(**result["done"])

    def _relay(self, stdin: IO[bytes], stdout: IO[bytes], stage: StageHook) -> dict[str, object] | None:
        for line in stdout:
            try:
                message = json.loads(line)
            except ValueError:
                return None
            if "stage" not in message:
                return message  # type: ignore[no-any-return]
            stage(str(message["stage"]))
            try:
                stdin.write(b"go\n")
                stdin.flush()
            except BrokenPipeError:
                return None
        return None

    def _discard(self) -> None:
        """Remove what a failed child left (the caller has not switched to it, so nothing names it)."""
        self.target.with_name(self.target.name + APPLYING_SUFFIX).unlink(missing_ok=True)
        self.target.unlink(missing_ok=True)


# --- the child ----------------------------------------------------------------------------------------


def _die_with_parent(parent: int) -> None:
    """Ask the kernel to SIGKILL this process when the desk dies; exit now if it already has."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)


def _background_priority() -> None:
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    with contextlib.suppress(OSError):
        os.nice(19)


def _send(out: IO[str], message: dict[str, object]) -> None:
    out.write(json.dumps(message) + "\n")
    out.flush()


def main() -> int:
    parent = os.getppid()
    _die_with_parent(parent)
    _background_priority()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    # The result pipe is fd 1 as the desk opened it; fd 1 itself now goes to stderr, so nothing else (a
    # print, a C library's output) can write on the pipe and garble the protocol.
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    line = sys.stdin.readline()
    if not line:
        return 1
    request = json.loads(line)

    def stage(name: str) -> None:
        _send(out, {"stage": name})
        if sys.stdin.readline() != "go\n":
            os._exit(1)  # the desk is gone or gave up: stop here, its next store open cleans up

    from library.segment import build_segment  # after the priority change: the imports are work too

    try:
        info, _ = build_segment([Path(p) for p in request["chain"]], Path(request["delta"]),
                                bytes.fromhex(request["key"]), Path(request["target"]), on_stage=stage,
                                index_threads=int(request["index_threads"]))
    except errors.SnapshotError as e:
        _send(out, {"error": type(e).__name__, "message": str(e)})
        return 0
    except Exception as e:  # reported, never swallowed: the parent raises it as a DeltaApplyError
        logger.exception("building the library segment failed")
        _send(out, {"error": type(e).__name__, "message": f"The update could not be applied ({e}). It was not "
                    f"installed; the installed library stays in use."})
        return 0
    _send(out, {"done": info.__dict__})
    return 0


if __name__ == "__main__":
    sys.exit(main())
