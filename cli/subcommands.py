"""The entry point of a `python3 -m PACKAGE COMMAND [flags]` command family.

One rule for all of them: no command prints the usage and exits 2; `-h`/`--help` prints the
package's help and exits 0; an unknown command is an error line plus the usage, exit 2;
flags first run the default command where the family has one.

Example:
    >>> dispatch(["audit", "--out_dir", "x"], {"audit": audit_main}, USAGE)
"""
from __future__ import annotations

import sys
from typing import Callable, Mapping, Sequence

from cli.errors import EXIT_BAD_INPUT, EXIT_OK
from cli.flags import format_config, parse_config

EXIT_USAGE = EXIT_BAD_INPUT  # a missing or unknown command is bad input


def dispatch(argv: Sequence[str] | None, commands: Mapping[str, Callable[[list[str]], int]],
             usage: str, help_text: str | None = None, default: str | None = None) -> int:
    """Runs `commands[argv[0]](argv[1:])` and returns its exit status.

    Args:
        argv: the arguments after the package name (None: sys.argv[1:]).
        commands: command name -> main(flags) -> exit status.
        usage: printed when no or an unknown command is given.
        help_text: printed for -h/--help (default: the usage).
        default: the command flags-first arguments run (None: they are an error).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        print(usage)
        return EXIT_USAGE
    if argv[0] in ("-h", "--help"):
        print(help_text or usage)
        return EXIT_OK
    if argv[0] in commands:
        return commands[argv[0]](argv[1:])
    if default is not None and argv[0].startswith("-"):
        return commands[default](argv)
    print(f"error: unknown command {argv[0]!r}\n{usage}", file=sys.stderr)
    return EXIT_USAGE


def parse_or_plan(config_class, argv: list[str], prog: str, plan: Callable[[object], str]):
    """The command's settings from its flags, or None after a `--dry-run`, which prints the
    settings and `plan(cfg)` (what the command would do) and writes nothing."""
    cfg, ns = parse_config(config_class, argv, prog=prog)
    if not ns._dry_run:
        return cfg
    print(format_config(cfg))
    print(plan(cfg))
    print("dry run: nothing written")
    return None
