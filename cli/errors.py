"""The command-line skeleton every command shares: one exit-status rule, one-line errors,
the lists of skipped and failed files.

Exit status: 0 done; 1 the command ran but some items (images, runs) failed, each listed and
the finished work kept; 2 bad input (settings, data, files, the machine): one `error:` line,
never a traceback. Each command's `main(argv) -> int` is wrapped once:

    @one_line_errors
    def main(argv=None) -> int:
        ...
        return report_failures(result.errors)

Bad settings (`ConfigError`) and bad data (`DatasetError`) print `error: <why>`; an operating
system fault (a full disk, a read-only or forbidden folder, a file that vanished) prints what
happened and to which file. Anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import errno
import functools
import sys
from pathlib import Path
from typing import Callable, Sequence

from cli.flags import ConfigError, format_config
from dataset.scan import DatasetError
from runtime.divergence import TrainingDiverged
from runtime.jobs import ExecutorError

EXIT_OK, EXIT_SOME_FAILED, EXIT_BAD_INPUT = 0, 1, 2

_REASONS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "the folder is on a read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOENT: "no such file or folder",
    errno.ENOTDIR: "a path component is not a folder",
    errno.EISDIR: "is a folder, not a file",
    errno.EIO: "input/output error",
}


def describe_os_error(err: OSError) -> str:
    """One line: what the operating system refused, and the file it was about.

    Example:
        >>> describe_os_error(OSError(errno.ENOSPC, "No space left", "out/a.png"))
        'no space left on the device (writing out/a.png); free some space and run the same command again: finished work is kept'
    """
    reason = _REASONS.get(err.errno) or (err.strerror or str(err) or type(err).__name__)
    # h5py and TensorFlow put the errno text in the message and no filename in the error
    text = str(err)
    if err.errno is None and "No space left on device" in text:
        reason = _REASONS[errno.ENOSPC]
    elif err.errno is None and "Read-only file system" in text:
        reason = _REASONS[errno.EROFS]
    elif err.errno is None and "Permission denied" in text:
        reason = _REASONS[errno.EACCES]
    where = err.filename or err.filename2
    blocking = _file_in_the_way(where) if err.errno in (errno.EEXIST, errno.ENOTDIR) else None
    if blocking is not None:    # mkdir below a file answers a bare "File exists"
        return f"{blocking} is a file, not a folder" + (
            f" (making {where})" if str(blocking) != str(where) else "")
    line = reason + (f" (writing {where})" if where and err.errno in (errno.ENOSPC,
                                                                         errno.EDQUOT)
                     else f": {where}" if where else "")
    if reason in (_REASONS[errno.ENOSPC], _REASONS[errno.EDQUOT]):
        line += "; free some space and run the same command again: finished work is kept"
    return line.splitlines()[0]


def _file_in_the_way(where) -> Path | None:
    """The file among `where` and its parents that a folder was to be made at (an output
    path below a file), or None."""
    if not where:
        return None
    path = Path(where)
    return next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)


def one_line_errors(main: Callable[..., int]) -> Callable[..., int]:
    """Wraps a command's main: ConfigError, DatasetError, ExecutorError (Ray missing or out of
    reach) and OSError become `error: ...` on stderr and exit status 2; a training stopped by
    a NaN/inf loss (TrainingDiverged) becomes `error: ...` and exit status 1."""
    @functools.wraps(main)
    def wrapper(*args, **kwargs) -> int:
        try:
            return main(*args, **kwargs)
        except (ConfigError, DatasetError, ExecutorError) as err:
            print(f"error: {str(err).splitlines()[0] if str(err) else type(err).__name__}",
                  file=sys.stderr)
        except OSError as err:
            print(f"error: {describe_os_error(err)}", file=sys.stderr)
        except TrainingDiverged as err:
            # the run failed, not the input: its good epochs are kept (exit status 1)
            print(f"error: {str(err).splitlines()[0]}", file=sys.stderr)
            return EXIT_SOME_FAILED
        return EXIT_BAD_INPUT
    return wrapper


def print_skipped(skipped: Sequence[tuple[str, str]], listed_in: str = "",
                  limit: int = 20) -> None:
    """Lists the input files a command skipped (path, reason), the first `limit` of them;
    `listed_in` names the file that lists them all."""
    if skipped:
        print(f"skipped {len(skipped)} file(s):")
        for path, reason in skipped[:limit]:
            print(f"  {path}: {reason}")
        if len(skipped) > limit:
            print(f"  ... and {len(skipped) - limit} more"
                  + (f" (see {listed_in})" if listed_in else ""))


def show_plan(cfg, plan_text: str, skipped: Sequence[tuple[str, str]] = (),
              dry_run: bool = False, listed_in: str = "") -> bool:
    """Prints the resolved settings, what the command will do and the files it skips;
    returns `dry_run`, after saying that nothing was written.

    Example:
        >>> if show_plan(cfg, format_plan(plan), plan.scan.skipped, ns._dry_run):
        ...     return EXIT_OK
    """
    print(format_config(cfg))
    print(plan_text)
    print_skipped(skipped, listed_in)
    if dry_run:
        print("dry run: nothing written")
    return dry_run


def report_failures(errors: Sequence[str]) -> int:
    """Lists the items that failed on stderr; the exit status: EXIT_OK or EXIT_SOME_FAILED.

    Example:
        >>> report_failures([])
        0
    """
    if not errors:
        return EXIT_OK
    print(f"{len(errors)} image(s) failed:", file=sys.stderr)
    for err in errors:
        print(f"  {err}", file=sys.stderr)
    return EXIT_SOME_FAILED
