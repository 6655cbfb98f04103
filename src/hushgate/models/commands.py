"""``hushgate models``: list, locate and install models.

hushgate models                      models that are installed
hushgate models list --all           the whole catalogue, installed ones marked
hushgate models pull NAME [--no-progress]
hushgate models path NAME            where NAME is on disk
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from hushgate.models.catalogue import install_command, load_catalogue
from hushgate.models.errors import ManualInstallRequired, ModelNotFound, PullError
from hushgate.models.locate import default_models_dir, installed_models, locate_model
from hushgate.models.pull import pull_model

PROG: Final = "hushgate models"
DESCRIPTION_WIDTH: Final = 60


def main(argv: list[str], *, models_dir: Path | None) -> int:
    """Run ``hushgate models ARGV``; returns the process exit status."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        # argparse exits on --help and on usage errors; callers want a status back
        return exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 2
    root: Path = args.models_dir or models_dir or default_models_dir()
    command: str | None = args.command
    if command == "pull":
        return _pull(args.name, root, progress=args.progress)
    if command == "path":
        return _path(args.name, root)
    if command == "list" and args.all:
        return _list_catalogue(root)
    return _list_installed(root)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="List, locate and install models.")
    parser.add_argument(
        "--models-dir",
        type=Path,
        default=None,
        help="directory of downloaded models (default: $XDG_DATA_HOME/hushgate/models)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    listing = commands.add_parser("list", help="list installed models (the default command)")
    listing.add_argument("--all", action="store_true", help="list the whole catalogue, marking installed models")
    pull = commands.add_parser("pull", help="download and install a catalogued model")
    pull.add_argument("name", metavar="NAME")
    pull.add_argument("--no-progress", dest="progress", action="store_false", help="do not draw a progress bar")
    path = commands.add_parser("path", help="print where a model is on disk")
    path.add_argument("name", metavar="NAME")
    return parser


def _list_installed(root: Path) -> int:
    found = installed_models(root)
    if not found:
        print(f"no models installed (models directory: {root})")
        print("`hushgate models list --all` shows what can be installed")
        return 0
    _print_table(
        ("NAME", "ENGINE", "LANGUAGE", "FOUND", "WHERE"),
        [(m.name, m.engine or "?", m.language or "?", m.found.replace("_", "-"), str(m.path)) for m in found],
    )
    print(f"\nmodels directory: {root}")
    return 0


def _list_catalogue(root: Path) -> int:
    installed = {m.name for m in installed_models(root)}
    rows = [
        (
            "*" if entry.name in installed else "",
            entry.name,
            entry.engine,
            entry.language,
            "yes" if entry.default else "",
            entry.licence,
            install_command(entry),
            _shorten(entry.description),
        )
        for entry in load_catalogue().values()
    ]
    _print_table(("", "NAME", "ENGINE", "LANGUAGE", "DEFAULT", "LICENCE", "INSTALL", "DESCRIPTION"), rows)
    print(f"\n* installed; models directory: {root}")
    return 0


def _pull(name: str, root: Path, *, progress: bool) -> int:
    try:
        path = pull_model(name, models_dir=root, progress=progress)
    except ManualInstallRequired as exc:
        print(str(exc), file=sys.stderr)
        print(exc.command)
        return 1
    except PullError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{name}: {path}")
    return 0


def _path(name: str, root: Path) -> int:
    entry = load_catalogue().get(name)
    if entry is None:
        # uncatalogued models are plain directories under the models directory
        unlisted = [m for m in installed_models(root) if m.name == name]
        if unlisted:
            print(unlisted[0].path)
            return 0
    try:
        path = locate_model(name, engine=entry.engine, models_dir=root) if entry is not None else _explicit_path(name)
    except ModelNotFound as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


def _explicit_path(name: str) -> Path:
    candidate = Path(name).expanduser()
    if candidate.exists():
        return candidate
    raise ModelNotFound(
        f"unknown model {name!r}: not in the catalogue and not installed "
        "(`hushgate models list --all` lists known models)"
    )


def _shorten(text: str) -> str:
    return text if len(text) <= DESCRIPTION_WIDTH else text[: DESCRIPTION_WIDTH - 1] + "…"


def _print_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    for row in (header, *rows):
        # the last column is never padded, so lines carry no trailing blanks
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths[:-1], strict=True)]
        print("  ".join((*cells, row[-1])).rstrip())


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:], models_dir=None))
