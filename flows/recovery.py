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
import json
import logging
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

__all__ = [
    "JOURNAL_DIR",
    "RUN_FILE",
    "journal_dir",
    "recovery_directory",
    "resume_problem",
    "store_problem",
]

JOURNAL_DIR = "journal"
RUN_FILE = "acquire-run.json"  # what a resume of the store depends on, beside the store
log = logging.getLogger(__name__)
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


def resume_problem(directory: Path, *, rate_hz: float, buses: Iterable[str]) -> str | None:
    """Why a run with ``rate_hz`` and ``buses`` cannot resume the store in ``directory``, in
    one line; None when it can (the first run of a store records them in :data:`RUN_FILE`).

    A resume continues each bus's tick schedule, whose tick numbers mean ``n / rate_hz``
    seconds: another rate would continue a schedule decades away. A bus that is gone, or
    renamed, leaves its journal and snapshot behind. A new bus starts fresh, which is fine.
    A store that has been run but whose journal is gone resumes with a WARNING: what was
    polled in the epoch the resume replays is lost.
    """
    path = directory / RUN_FILE
    now = {"rate_hz": rate_hz, "buses": sorted(buses)}
    if not path.exists():
        _record(path, now)
        return None
    start_over = (
        f"run with the config that made it, or start over: rm -rf {directory} && mkdir -p "
        f"{directory} && python -m bytewax.recovery {directory} 1"
    )
    try:
        was = json.loads(path.read_text())
        was_rate, was_buses = float(was["rate_hz"]), set(was["buses"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"recovery store {str(directory)!r}: {RUN_FILE} is unreadable ({exc}); {start_over}"
    changed = []
    if was_rate != rate_hz:
        changed.append(f"rate_hz was {was_rate:g}, is {rate_hz:g}")
    if gone := sorted(was_buses - set(now["buses"])):
        changed.append(f"bus{'es' * (len(gone) > 1)} {', '.join(map(repr, gone))} gone")
    if changed:
        return (
            f"recovery store {str(directory)!r} was made by a run with other settings "
            f"({'; '.join(changed)}): {start_over}"
        )
    journal = directory / JOURNAL_DIR
    if not journal.is_dir() or not any(journal.iterdir()):
        log.warning(
            "recovery store %r has no journal (%s): what was polled in the epoch a resume "
            "replays is lost",
            str(directory), journal,
        )  # fmt: skip
    if new := sorted(set(now["buses"]) - was_buses):
        _record(path, {"rate_hz": rate_hz, "buses": sorted(was_buses | set(new))})
    return None


def _record(path: Path, data: dict[str, object]) -> None:
    """Write ``data`` to ``path`` whole or not at all (a crash leaves the old file)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data) + "\n")
    os.replace(tmp, path)
