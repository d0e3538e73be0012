"""An experiment folder as untrusted input: the one way the commands read and write inside one.

A results folder may come from someone else (a shared drive, an archive, a colleague's copy), so nothing in
it is trusted. ``symsweep report``, ``status``, ``evaluate`` and ``load_experiment`` read and write through a
``Folder`` and follow its rules:

- **Inside only.** The root is resolved once (the user named it); every path below it is relative, plain
  names joined by "/" (no "..", ".", empty or absolute parts), and every component is opened relative to its
  parent directory (``dir_fd``) with ``O_NOFOLLOW``: a symbolic link anywhere below the root is never
  followed.
- **Regular files, bounded.** A read takes a regular file only (checked with ``lstat``, opened with
  ``O_NOFOLLOW | O_NONBLOCK``, checked again with ``fstat``: never a FIFO, device, socket or link) of at
  most ``TEXT_LIMIT`` (4 MiB: config.json, params.json, error.txt, eval_samples.json, a checkpoint's
  meta.json; symsweep writes a few KiB, Ray's error.txt a traceback per failure) or ``RESULTS_LIMIT``
  (256 MiB: result.json and experiment_state-*.json; a report line is about 1 KiB and a state file about
  30 KiB per trial, so this is some 250,000 reports or 8,000 trials). JSON is nested at most ``JSON_DEPTH``
  levels (symsweep and Ray Tune write fewer than 10; deeper nesting, which makes Python's parser raise
  RecursionError, is damage like any other).
- **Writes replace.** A file is written to a new temporary file (``O_EXCL``) in the same real directory,
  then renamed onto its name with ``os.replace``: a link planted there is replaced, never written through.
  ``directory`` makes a real directory where a link or file was (removing the link itself, never what it
  points to).
- **Damage is one line.** What is wrong is a ``FolderError`` (a ValueError: the command line prints it in
  one line, exit 2) naming the file. A tolerant read (``strict=False``) returns None for a missing file and,
  for a damaged one, records it in ``skipped`` instead, so that one damaged trial does not stop a report;
  the command says so once on stderr (``warn_skipped``).

Names read from a folder (metrics, swept keys) are used only when ``plausible``, and text from a folder is
made one line (``one_line``) wherever it is written into Markdown, CSV or the terminal.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import stat
import sys
from pathlib import Path
from typing import IO, Any, Callable

MiB = 1 << 20
TEXT_LIMIT = 4 * MiB
RESULTS_LIMIT = 256 * MiB
JSON_DEPTH = 64
MISSING = "missing"
LINK = "a symbolic link (not followed)"
PLAUSIBLE = re.compile(r"[A-Za-z0-9_.\-\[\]]{1,120}")  # a metric name or a swept key
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")  # anything that can start a line or drive a terminal
FORMULA = re.compile(r"[=+@]|-[^0-9]")  # what a spreadsheet would run as a formula
KINDS = ((stat.S_ISREG, "file"), (stat.S_ISDIR, "directory"), (stat.S_ISLNK, "link"), (stat.S_ISFIFO, "FIFO"),
         (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "device"), (stat.S_ISBLK, "device"))


class FolderError(ValueError):
    """A file of an experiment folder that cannot be used: ``<path> is <reason>``."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"{path} is {reason}")
        self.path, self.reason = path, reason


def plausible(name: Any) -> bool:
    """A metric name or swept key that may become a table header or part of a file name."""
    return isinstance(name, str) and PLAUSIBLE.fullmatch(name) is not None


def one_line(text: str) -> str:
    """``text`` with every control character (newlines, escapes) replaced by a space."""
    return CONTROL.sub(" ", text)


def spreadsheet_text(text: str) -> str:
    """A CSV text cell that no spreadsheet runs: one line, a leading ``'`` before ``=``, ``+``, ``@`` or ``-``
    followed by a non-digit (a negative number stays as it is, and so do the markers "-" and "—")."""
    text = one_line(text)
    return "'" + text if FORMULA.match(text) else text


def parse_json(text: str | bytes) -> Any:
    """JSON nested at most ``JSON_DEPTH`` levels; otherwise a ValueError whose text says what is wrong."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise ValueError(f"nested deeper than {JSON_DEPTH} levels (JSON)") from None
    except ValueError as err:
        raise ValueError(f"not valid JSON ({str(err)[:120]})") from None
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > JSON_DEPTH:
            raise ValueError(f"nested deeper than {JSON_DEPTH} levels (JSON)")
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return value


def _kind(mode: int) -> str:
    return next((name for test, name in KINDS if test(mode)), "special file")


def _wrong(kind: str, expected: str) -> str:
    """The reason a ``kind`` found where ``expected`` (a file, a directory) should be is unusable."""
    return MISSING if kind == MISSING else LINK if kind == "link" else f"a {kind}, not a {expected}"


def _mib(limit: int) -> str:
    return f"{limit / MiB:g} MiB"


class Folder:
    """An experiment directory: its resolved root ``path`` and what tolerant reads skipped in it."""

    def __init__(self, root: str | os.PathLike):
        self.path = Path(root).expanduser().resolve()
        self.skipped: dict[str, str] = {}  # experiment-relative name -> reason, the first reason only

    @classmethod
    def of(cls, source: str | os.PathLike | Folder) -> Folder:
        return source if isinstance(source, Folder) else cls(source)

    # -- paths -------------------------------------------------------------------------------------------
    def _parts(self, relative: str) -> list[str]:
        parts = relative.split("/")
        if not relative or any(part in ("", ".", "..") or "\0" in part for part in parts):
            raise FolderError(self.path / relative, "not a path inside the experiment")
        return parts

    def _at(self, parent: int, name: str) -> str:
        """The kind of ``name`` in directory ``parent`` (a link is a link), or MISSING."""
        try:
            return _kind(os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode)
        except FileNotFoundError:
            return MISSING

    def _directory_fd(self, parts: list[str]) -> int:
        """An open descriptor of the real directory ``parts`` below the root (no link followed)."""
        fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for index, part in enumerate(parts):
                kind = self._at(fd, part)
                if kind != "directory":
                    raise FolderError(self.path.joinpath(*parts[:index + 1]), _wrong(kind, "directory"))
                child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
                os.close(fd)
                fd = child
        except BaseException:
            os.close(fd)
            raise
        return fd

    @contextlib.contextmanager
    def _inside(self, relative: str, parts: list[str]):
        """A descriptor of the real directory ``parts``, closed afterwards; an OSError in the block is a
        FolderError naming ``relative``."""
        try:
            fd = self._directory_fd(parts)
            try:
                yield fd
            finally:
                os.close(fd)
        except OSError as err:
            raise FolderError(self.path / relative, f"not usable ({err.strerror or err})") from None

    @contextlib.contextmanager
    def _parent(self, relative: str):
        """(descriptor of the directory holding ``relative``, its last name), as ``_inside``."""
        parts = self._parts(relative)
        with self._inside(relative, parts[:-1]) as fd:
            yield fd, parts[-1]

    def kind(self, relative: str) -> str:
        """"file", "directory", "link", "FIFO", "socket", "device" or MISSING (also when a directory on the
        way is not a real directory)."""
        try:
            with self._parent(relative) as (fd, name):
                return self._at(fd, name)
        except FolderError:
            return MISSING

    def trial_directory(self, name: Any) -> str | None:
        """``name`` when it is one plain name of a real directory of the root (a trial's ``relative_logdir``);
        otherwise None, recorded in ``skipped`` unless it is empty or missing (a trial not started yet)."""
        if not name:
            return None
        if not (isinstance(name, str) and "/" not in name and name not in (".", "..") and "\0" not in name):
            self.skip(repr(name)[:120], "not a directory name inside the experiment")
            return None
        kind = self.kind(name)
        if kind not in ("directory", MISSING):
            self.skip(name, _wrong(kind, "directory"))
        return name if kind == "directory" else None

    def entries(self, relative: str = "") -> dict[str, str]:
        """The names in directory ``relative`` (the root by default) -> their kinds, links not followed."""
        with self._inside(relative, self._parts(relative) if relative else []) as fd:
            return {entry.name: _kind(entry.stat(follow_symlinks=False).st_mode) for entry in os.scandir(fd)}

    def tree(self, relative: str) -> list[str]:
        """Directory ``relative`` and every real directory below it (links not followed), sorted."""
        found, pending = [], [relative]
        while pending:
            directory = pending.pop()
            found.append(directory)
            pending += [f"{directory}/{name}" for name, kind in self.entries(directory).items() if kind == "directory"]
        return sorted(found)

    # -- reading -----------------------------------------------------------------------------------------
    def open_file(self, relative: str, flags: int = os.O_RDONLY, create: bool = False) -> int:
        """A descriptor of the regular file ``relative`` (made when ``create``): never a link, FIFO or device."""
        with self._parent(relative) as (parent, name):
            kind = self._at(parent, name)
            if kind != "file" and not (create and kind == MISSING):
                raise FolderError(self.path / relative, _wrong(kind, "regular file"))
            fd = os.open(name, flags | (os.O_CREAT if create else 0) | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                         0o666, dir_fd=parent)
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # it changed since: refuse it all the same
            os.close(fd)
            raise FolderError(self.path / relative, "not a regular file")
        return fd

    def _bytes(self, relative: str, limit: int) -> bytes:
        try:
            with os.fdopen(self.open_file(relative), "rb") as handle:
                too_large = os.fstat(handle.fileno()).st_size > limit  # refused unread (a sparse 1 GB file)
                data = b"" if too_large else handle.read(limit + 1)  # a file still growing stops at the limit
        except OSError as err:
            raise FolderError(self.path / relative, f"not readable ({err.strerror or err})") from None
        if too_large or len(data) > limit:
            raise FolderError(self.path / relative, f"larger than {_mib(limit)}")
        return data

    def _tolerant(self, relative: str, strict: bool, read: Callable[[], Any]) -> Any:
        try:
            return read()
        except FolderError as err:
            if strict:
                raise
            if err.reason != MISSING:
                self.skip(relative, err.reason)
            return None

    def read_text(self, relative: str, limit: int = TEXT_LIMIT, strict: bool = True) -> str | None:
        """The text of ``relative`` (UTF-8, undecodable bytes replaced)."""
        return self._tolerant(relative, strict, lambda: self._bytes(relative, limit).decode("utf-8", "replace"))

    def read_json(self, relative: str, limit: int = TEXT_LIMIT, strict: bool = True) -> Any:
        """The JSON value in ``relative``."""
        def read() -> Any:
            data = self._bytes(relative, limit)
            try:
                return parse_json(data)
            except ValueError as err:
                raise FolderError(self.path / relative, str(err)) from None

        return self._tolerant(relative, strict, read)

    def skip(self, where: str, reason: str) -> None:
        """Remember that ``where`` (experiment-relative) was left out, and why (the first reason only)."""
        self.skipped.setdefault(where, reason)

    def warn_skipped(self, command: str) -> None:
        """One line on stderr per thing a tolerant read left out."""
        for where, reason in self.skipped.items():
            print(one_line(f"symsweep {command}: skipped {where}: {reason}"), file=sys.stderr)

    # -- writing -----------------------------------------------------------------------------------------
    def write(self, relative: str, fill: Callable[[IO], None], binary: bool = False) -> Path:
        """Write ``relative`` whole with ``fill(handle)``: a new temporary file beside it, then renamed onto
        it (a link there is replaced, never written through). Returns its path."""
        with self._parent(relative) as (parent, name):
            temporary = f".{name[:200]}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666,
                         dir_fd=parent)
            try:
                with os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
                    fill(handle)
                os.replace(temporary, name, src_dir_fd=parent, dst_dir_fd=parent)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temporary, dir_fd=parent)
                raise
        return self.path / relative

    def write_text(self, relative: str, text: str) -> Path:
        return self.write(relative, lambda handle: handle.write(text))

    def directory(self, relative: str, clear: str | None = None) -> Path:
        """``relative`` as a real directory: a link or file there is removed (the link itself, never what it
        points to) and a directory made. With ``clear`` (a suffix such as ".png"), its entries of that suffix
        that are files or links are removed (unlinked, not followed)."""
        with self._parent(relative) as (parent, name):
            kind = self._at(parent, name)
            if kind not in ("directory", MISSING):
                os.unlink(name, dir_fd=parent)
            if kind != "directory":
                os.mkdir(name, dir_fd=parent)
        if clear:
            with self._inside(relative, self._parts(relative)) as fd:
                for entry in os.scandir(fd):
                    if entry.name.endswith(clear) and not entry.is_dir(follow_symlinks=False):
                        os.unlink(entry.name, dir_fd=fd)
        return self.path / relative

    def remove(self, relative: str) -> None:
        """Remove ``relative``: a real directory with everything in it (links in it are removed, not followed),
        anything else (a link included) by unlinking it."""
        with self._parent(relative) as (parent, name):
            kind = self._at(parent, name)
            if kind == "directory":
                shutil.rmtree(self.path / relative)  # refuses a link at the top, never follows one inside
            elif kind != MISSING:
                os.unlink(name, dir_fd=parent)

    def move(self, relative: str, target: str) -> Path:
        """Rename ``relative`` to ``target`` (both inside the root; ``target``'s directory must be real)."""
        with self._parent(relative) as (source, name), self._parent(target) as (destination, new):
            os.rename(name, new, src_dir_fd=source, dst_dir_fd=destination)
        return self.path / target


def replace_file(path: Path, fill: Callable[[IO], None], binary: bool = False) -> Path:
    """``Folder.write`` for writers handed a path (the tables, the figures): ``path``'s directory (the experiment
    root, or ``plots/`` made real by ``Folder.directory``) is opened from its resolved parent without following
    a link, so a directory swapped for a link meanwhile is refused, not written through."""
    return Folder(path.parent.parent).write(f"{path.parent.name}/{path.name}", fill, binary)

