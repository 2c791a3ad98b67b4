"""Output sets: what one run of a command wrote into a folder, so stale files never mix with new ones.

A command that writes a folder (evaluate, predict, compare, export) opens an ``OutputSet``; it
records each file it writes, and ``commit`` writes the manifest ``attnmel-outputs.json`` last,
atomically: a run id, the command, and each file with its size and SHA-256. Opening the set first
removes the previous manifest, so an interrupted run leaves a folder without one, which readers
refuse instead of mixing one run's ``metrics.json`` with another's ``predictions.csv``. At commit,
the files the previous run (its manifest, or this command's known names) wrote and this one did
not are moved aside to ``stale-<previous run id>/``, said in one line. Readers (``compare``,
``report``) take only files the manifest names, and check their hashes.

A set writes only inside its folder and never destroys a file it did not write: every name it is
given passes ``attnmel.arguments.path_name`` part by part (an image ID ``../x`` cannot name a
figure outside ``figures/``), the previous manifest's run id too before it names the stale folder,
and a file this run is about to write over that the previous run did not write (a user's own
``metrics.json``, one edited since, or any file when there is no manifest) is moved aside first.
The stale folder is always a new one, so nothing already set aside is written over either.

A command that writes one file into a folder of the user's (``attnmel report`` and its figure, ``attnmel
data stats``) opens ``OutputSet.for_file``: the same rule, with a manifest of that file's own beside it.
A command never writes into a training run's folder it was not asked to (``training_run_file``).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from attnmel.arguments import path_name
from attnmel.errors import ConfigError, DataError
from attnmel.io import atomic_write_json, file_sha256

MANIFEST = "attnmel-outputs.json"
#: the folder name stale files are moved into (with the previous run's id)
STALE_PREFIX = "stale-"


def check_output_dir(folder: str | Path, option: str = "--output") -> Path:
    """A folder to write into: refused when it is an existing file (or under one)."""
    folder = Path(folder)
    for part in (folder, *folder.parents):
        if part.exists() and not part.is_dir():
            raise ConfigError(f"{option} {folder}: {part} is an existing file, not a folder; "
                              "give a folder (this command writes a set of files into it).")
    return folder


def check_output_file(path: str | Path, option: str = "--output") -> Path:
    """A file to write: refused when it is an existing folder or its parent is a file."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{option} {path}: is an existing folder, not a file; name a file (e.g. inside it).")
    check_output_dir(path.parent, option)
    return path


def _new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]


@dataclass
class OutputSet:
    """The files one run writes into ``folder``; ``known`` are the names this command may write
    (relative paths; a folder ending in '/'), moved aside when a re-run does not write them."""

    folder: Path
    command: str
    known: tuple[str, ...] = ()
    log: Callable[[str], None] | None = print
    run_id: str = field(default_factory=_new_run_id)
    files: list[str] = field(default_factory=list)
    previous: dict[str, Any] = field(default_factory=dict)
    #: files found where this run writes that no earlier run of this command wrote: moved aside first
    protected: list[str] = field(default_factory=list)
    #: the manifest's name: ``MANIFEST`` for a folder the command owns; ``file_manifest(name)`` for one
    #: file (and its companions) that a command writes into a folder of the user's (``OutputSet.for_file``)
    manifest: str = MANIFEST
    _aside: Path | None = field(default=None, repr=False)

    @classmethod
    def for_file(cls, path: str | Path, command: str, companions: Sequence[str] = (),
                 log: Callable[[str], None] | None = print) -> OutputSet:
        """The set of one output file named by ``--output`` (and ``companions``, names beside it such as
        its figure), in a folder that holds other things: its manifest is its own, so a re-run replaces
        only what an earlier run of ``command`` wrote there, and a user's file of the same name is moved
        aside first."""
        path = check_output_file(path)
        names = (path.name, *companions)
        return cls(path.parent, command, known=names, log=log, manifest=file_manifest(path.name))

    def __post_init__(self) -> None:
        self.folder = check_output_dir(self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        manifest = self.folder / self.manifest
        if manifest.is_file():
            try:
                self.previous = json.loads(manifest.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError):
                self.previous = {}
            if not isinstance(self.previous, dict):
                self.previous = {}
            manifest.unlink()  # from now on the folder holds no complete set until commit
        for name in self.known:  # what this command writes without asking path() first (its plots)
            self._protect(self._check_name(name.rstrip("/")), folder=name.endswith("/"))

    def path(self, name: str) -> Path:
        """Where to write ``name`` (relative to the folder); recorded as written by this run. A file
        already there that no earlier run of this command wrote is moved aside first."""
        self._check_name(name)
        if name not in self.files:
            self._protect(name)
            self.files.append(name)
        return self.folder / name

    def add(self, path: str | Path) -> Path:
        """Record a file (or every file of a folder) already written under the folder."""
        path = Path(path)
        targets = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for target in targets:
            name = self._check_name(target.relative_to(self.folder).as_posix())
            if name not in self.files:
                self.files.append(name)
        return path

    def _check_name(self, name: str) -> str:
        """``name`` when every part of it is a name inside the folder (``path_name``), and it is neither
        the manifest nor inside a stale folder."""
        parts = name.split("/")
        bad = next(((part, path_name(part)) for part in parts if path_name(part) is not None), None)
        if bad is not None:
            raise ConfigError(f"{self.folder}: cannot write {name!r} into it: {bad[0]!r} {bad[1]}. Fix: give the "
                              "file a plain name (an image ID or dataset name without path separators).")
        if name in (MANIFEST, self.manifest) or parts[0].startswith(STALE_PREFIX):
            raise ConfigError(f"{self.folder}: cannot write {name!r} into it: the name is the folder's output manifest "
                              f"or a folder of stale files ({STALE_PREFIX}*). Fix: choose another name.")
        return name

    def commit(self, **details: Any) -> Path:
        """Move aside what the previous run wrote and this one did not, then write the manifest (last)."""
        self._move_stale()
        entries = [{"path": name, "bytes": (self.folder / name).stat().st_size,
                    "sha256": file_sha256(self.folder / name)} for name in self.files]
        manifest = self.folder / self.manifest
        atomic_write_json(manifest, {"run_id": self.run_id, "command": self.command,
                                     "written": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                     **details, "files": entries})
        if self.protected and self.log is not None:
            self.log(f"moved {_listed(self.protected)} that no earlier attnmel {self.command} wrote here (or that "
                     f"changed since) to {self._aside} before writing over them")
        return manifest

    def _previous_files(self) -> dict[str, str | None]:
        """name -> sha256 of each file the previous run's manifest names (names that leave the folder,
        or lead into a stale folder, are none of this set's business and are left out)."""
        entries = self.previous.get("files", [])
        if not isinstance(entries, list):
            return {}
        return {entry["path"]: entry.get("sha256") for entry in entries if isinstance(entry, dict)
                and isinstance(entry.get("path"), str) and _plain(entry["path"])}

    def _protect(self, name: str, folder: bool = False) -> None:
        """Move aside what lies at ``name`` (every file under it with ``folder``) unless the previous run
        of this command wrote it and it is unchanged since: a re-run replaces only its own files, and
        writes through no link (nor into a file) found where one of its folders should be."""
        parts = name.split("/")
        for k in range(1, len(parts) + folder):
            prefix = "/".join(parts[:k])
            where = self.folder / prefix
            if where.is_symlink() or (where.exists() and not where.is_dir()):
                self._set_aside(prefix)
                self.protected.append(prefix)
                return
        target = self.folder / name
        if folder:
            found = sorted(p.relative_to(self.folder).as_posix() for p in target.rglob("*")
                           if p.is_file() or p.is_symlink()) if target.is_dir() else []
        else:
            found = [name] if target.exists() or target.is_symlink() else []
        ours = self._previous_files() if self.previous.get("command") == self.command else {}
        for relative in found:
            path = self.folder / relative
            if relative in ours and path.is_file() and not path.is_symlink() and file_sha256(path) == ours[relative]:
                continue
            self._set_aside(relative)
            self.protected.append(relative)

    def _aside_folder(self) -> Path:
        """This run's folder of set-aside files: ``stale-<previous run id>`` (or ``stale-earlier``), made
        new, so files set aside by an earlier run are never written over."""
        if self._aside is None:
            run_id = self.previous.get("run_id")
            plain = path_name(run_id) is None and path_name(STALE_PREFIX + run_id) is None
            label = run_id if plain else "earlier"  # a run id that is no plain name is not used as one
            base, k = self.folder / f"{STALE_PREFIX}{label}", 2
            candidate = base
            while True:
                try:
                    candidate.mkdir()
                    break
                except FileExistsError:
                    candidate, k = base.with_name(f"{base.name}-{k}"), k + 1
            self._aside = candidate
        return self._aside

    def _set_aside(self, name: str) -> None:
        target = self._aside_folder() / name
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.folder / name, target)
        _remove_empty_parents((self.folder / name).parent, self.folder)

    def _stale(self) -> list[str]:
        ours = set(self.files)
        candidates = set(self._previous_files())
        for name in self.known:
            target = self.folder / name.rstrip("/")
            if name.endswith("/") and target.is_dir():
                candidates |= {p.relative_to(self.folder).as_posix() for p in target.rglob("*") if p.is_file()}
            elif target.is_file():
                candidates.add(name)
        return sorted(name for name in candidates if name not in ours and _inside(self.folder, name)
                      and (self.folder / name).is_file())

    def _move_stale(self) -> None:
        stale = self._stale()
        if not stale:
            return
        for name in stale:
            self._set_aside(name)
        if self.log is not None:
            self.log(f"moved {_listed(stale)} an earlier run wrote and this one did not to {self._aside}")


def file_manifest(name: str) -> str:
    """The manifest of a single output file ``name`` (``OutputSet.for_file``), hidden beside it."""
    return f".{name}.{MANIFEST}"


#: what a training run writes first into its folder: a folder holding one of them is a training run's
#: (``attnmel.training.resume.STATE_FILE``, ``attnmel.data.splits.SPLIT_FILE``; named here, below both)
TRAINING_RUN_FILES = ("last-state.safetensors", "split.json")


def training_run_file(folder: str | Path) -> Path | None:
    """The file that makes ``folder`` a training run's (its state or split record), or None."""
    return next((Path(folder) / name for name in TRAINING_RUN_FILES if (Path(folder) / name).is_file()), None)


def _listed(names: Sequence[str]) -> str:
    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    return f"{len(names)} file(s) ({shown})"


def _plain(name: str) -> bool:
    """Every part of ``name`` is a name inside its folder, and it does not lead into a stale folder."""
    parts = name.split("/")
    return all(path_name(part) is None for part in parts) and not parts[0].startswith(STALE_PREFIX)


def _inside(folder: Path, name: str) -> bool:
    resolved = (folder / name).resolve()
    return resolved.is_relative_to(folder.resolve()) and not name.startswith(STALE_PREFIX)


def _remove_empty_parents(folder: Path, top: Path) -> None:
    while folder != top and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
        folder = folder.parent


@dataclass(frozen=True)
class WrittenSet:
    """A folder's manifest as a reader sees it: only these files belong to the run."""

    folder: Path
    run_id: str
    command: str
    files: dict[str, str]

    def get(self, name: str) -> Path | None:
        """The file ``name`` if this run wrote it (and it is unchanged since), else None."""
        if name not in self.files:
            return None
        path = self.folder / name
        if not path.is_file() or file_sha256(path) != self.files[name]:
            raise DataError(path, f"this file changed after run {self.run_id} wrote it (or is missing).",
                            f"re-run attnmel {self.command} into {self.folder}.")
        return path

    def require(self, name: str) -> Path:
        path = self.get(name)
        if path is None:
            raise DataError(self.folder / name, f"run {self.run_id} ({self.command}) did not write this file.",
                            f"re-run attnmel {self.command} with the options that write it.")
        return path


def read_manifest(folder: str | Path, commands: Iterable[str] = ()) -> WrittenSet:
    """The output set in ``folder``; a folder without a manifest (an interrupted run, or one written by an
    attnmel older than output sets) is refused, naming the manifest."""
    folder = Path(folder)
    manifest = folder / MANIFEST
    expected = " or ".join(f"attnmel {c}" for c in commands) or "the attnmel command"
    if not manifest.is_file():
        raise DataError(manifest, "no output manifest: the run that wrote this folder was interrupted, or is "
                                  "from an attnmel older than output sets.", f"re-run {expected} into {folder}.")
    try:
        payload = json.loads(manifest.read_text(encoding="utf-8"))
        files = {str(entry["path"]): str(entry["sha256"]) for entry in payload["files"]}
        written = WrittenSet(folder, str(payload["run_id"]), str(payload["command"]), files)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise DataError(manifest, f"not a readable output manifest ({exc}).", f"re-run {expected}.") from None
    if commands and written.command not in commands:
        raise DataError(manifest, f"written by attnmel {written.command}, not {expected}.", "point at the right folder.")
    return written
