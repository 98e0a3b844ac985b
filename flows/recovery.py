"""Where the command-line flow keeps its journal: inside the Bytewax recovery directory.

A run with Bytewax recovery::

    python -m bytewax.recovery recovery 1
    python -m bytewax.run flows.acquire -r recovery -s 1 -b 0

(or ``BYTEWAX_RECOVERY_DIRECTORY``, ``BYTEWAX_SNAPSHOT_INTERVAL`` and
``BYTEWAX_RECOVERY_BACKUP_INTERVAL`` instead of ``-r``, ``-s`` and ``-b``) journals every
bus in ``recovery/journal/`` (see connectors.journal). ``bytewax.run`` hands the directory
to its runtime only, so :func:`recovery_directory` reads it from the same command line or
variable. The journal is on exactly when recovery is: recovery without it would lose what
was polled in the epoch a resume replays, and a journal without a recovery store is never
read. Keeping it inside the store's directory makes one store and its journal one thing to
back up, move or delete (delete the whole directory to start over).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["JOURNAL_DIR", "journal_dir", "recovery_directory", "store_problem"]

JOURNAL_DIR = "journal"
_ENV = "BYTEWAX_RECOVERY_DIRECTORY"


def _main_module() -> str | None:
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return getattr(spec, "name", None)


def recovery_directory(
    argv: Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
    main: str | None = None,
) -> Path | None:
    """The recovery directory of a ``python -m bytewax.run`` run: its ``-r`` /
    ``--recovery-directory`` option, else ``$BYTEWAX_RECOVERY_DIRECTORY``, as bytewax.run
    reads them; None without recovery or when the process is not ``bytewax.run`` (a flow run
    from Python gets its journal directory passed to ``build_flow``).

    ``argv``, ``environ`` and ``main`` (the ``__main__`` module's name) default to this
    process's.
    """
    if (main if main is not None else _main_module()) != "bytewax.run":
        return None
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("-r", "--recovery-directory", type=Path)
    known, _ = parser.parse_known_args(list(sys.argv[1:] if argv is None else argv))
    if known.recovery_directory is not None:
        return known.recovery_directory
    value = (os.environ if environ is None else environ).get(_ENV)
    return Path(value) if value else None


def journal_dir(
    argv: Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
    main: str | None = None,
) -> Path | None:
    """``<recovery directory>/journal`` for a run with recovery, else None (no journal)."""
    directory = recovery_directory(argv, environ, main)
    return None if directory is None else directory / JOURNAL_DIR


def store_problem(directory: Path) -> str | None:
    """Why ``directory`` is not a Bytewax recovery store, in one line; None if it is one.
    (bytewax.run finds out only once it runs, with a panic and two tracebacks.)"""
    create = f"mkdir -p {directory} && python -m bytewax.recovery {directory} 1"
    if not directory.is_dir():
        return f"recovery directory {str(directory)!r} does not exist; create a store: {create}"
    if not any(directory.glob("part-*.sqlite3")):
        return f"recovery directory {str(directory)!r} holds no store; create one: {create}"
    return None
