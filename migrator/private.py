"""Files and folders the tool creates are its owner's alone: 0600 files, 0700 folders.

They hold the daemon's private data (prompts, session contents), whatever the mode of the source
they came from: 0600 is as strict as a file can be that its owner must still write, so it is never
looser than a source's own mode. Each library function that creates a file creates it with its
mode through this module, so a library caller gets private files without the CLI. The CLI and
the sign-off gate also run under a umask of 077 (`private_umask`), for what other code creates on
their behalf. SQLite gives a database's -wal, -shm and -journal files the database file's mode.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

FILE_MODE = 0o600
FOLDER_MODE = 0o700
PRIVATE_UMASK = 0o077
COPY_CHUNK = 1 << 20

_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


def open_new(path: str | os.PathLike[str], mode: str = "w", **kwargs: Any) -> IO[Any]:
    """A new file opened for writing, created 0600 (`FileExistsError` if anything is at `path`).

    `mode` is "w" or "wb"; `kwargs` go to `open` (encoding, newline)."""
    if mode not in ("w", "wb"):
        raise ValueError(f"open_new writes a new file: mode 'w' or 'wb', got {mode!r}")
    descriptor = os.open(path, _NEW_FILE, FILE_MODE)
    try:
        return open(descriptor, mode, **kwargs)
    except BaseException:
        os.close(descriptor)
        raise


def create_file(path: str | os.PathLike[str], *, exist_ok: bool = False) -> None:
    """An empty 0600 file at `path` (an empty file is also an empty SQLite database)."""
    try:
        os.close(os.open(path, _NEW_FILE, FILE_MODE))
    except FileExistsError:
        if not exist_ok:
            raise


def copy_file(source: str | os.PathLike[str], copy: str | os.PathLike[str]) -> Path:
    """A new 0600 file at `copy` with the bytes of `source`."""
    with open(source, "rb") as original, open_new(copy, "wb") as duplicate:
        shutil.copyfileobj(original, duplicate, COPY_CHUNK)
    return Path(copy)


def write_new_text(path: str | os.PathLike[str], text: str) -> Path:
    """`text` in a new 0600 file at `path`, replacing a file left there (a `.partial` of a run that broke)."""
    Path(path).unlink(missing_ok=True)
    with open_new(path, "w", encoding="utf-8") as handle:
        handle.write(text)
    return Path(path)


def make_folder(path: str | os.PathLike[str], *, exist_ok: bool = False) -> Path:
    """The folder `path`, and every missing folder above it, created 0700 (`mkdir -p` would give
    the parents the default mode)."""
    folder = Path(path)
    for parent in reversed(folder.parents):
        if not parent.exists():
            parent.mkdir(mode=FOLDER_MODE, exist_ok=True)
    folder.mkdir(mode=FOLDER_MODE, exist_ok=exist_ok)
    return folder


@contextmanager
def private_umask() -> Iterator[None]:
    """Whatever the process creates meanwhile is its owner's alone; the umask is put back after."""
    previous = os.umask(PRIVATE_UMASK)
    try:
        yield
    finally:
        os.umask(previous)
