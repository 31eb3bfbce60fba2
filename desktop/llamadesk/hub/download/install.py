"""The install half of a download: space checks, source records, and the all-or-nothing move.

A split model is installed all parts or none: the records are written first and the first
part (the one people open) is moved last; a failed move puts everything back.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import datetime, timezone
from pathlib import Path

from ...files import write_regular_text
from ..errors import HubError
from .base import TaskCore
from .files import format_size, read_sidecar, read_sidecar_text, sidecar_path
from .part import Part

log = logging.getLogger(__name__)


class Install(TaskCore):
    """Decide what is already done or stale, check the space, and move verified files into place."""

    def _installed(self, part: Part) -> bool:
        """True if a verified copy of this file is already in place (nothing to do)."""
        try:
            size = part.dest.stat().st_size
        except OSError:
            return False
        record = read_sidecar(part.dest) or {}
        if part.sha256 is not None:
            same_hash = record.get("sha256") == part.sha256
        else:
            same_hash = part.git_sha1 is None or record.get("git_sha1") == part.git_sha1
        if size == part.size and same_hash and record.get("repo_id") == self.repo_id:
            part.done, part.verified = size, True
            return True
        return False

    def _stale_part(self, part: Part) -> str | None:
        """Why the bytes in ``part.part_file`` can't be resumed (another version of the file), if so.

        The .part file's sidecar records the file an earlier attempt was fetching; when the
        repo has replaced that file since, those bytes belong to the old version.
        """
        if not part.part_file.exists():
            return None
        record = read_sidecar(part.part_file)
        if record is None:
            return None  # nothing to compare with: the checksum still guards the result
        if record.get("repo_id") != self.repo_id or record.get("path_in_repo") != part.path:
            return "the partial file belongs to another download"
        old_sha, old_size, old_commit = record.get("sha256"), record.get("size"), record.get("commit")
        old_git = record.get("git_sha1")
        if part.sha256 is not None and isinstance(old_sha, str) and old_sha.lower() != part.sha256:
            return f"the file changed on the Hub (SHA-256 {old_sha[:12]}… is now {part.sha256[:12]}…)"
        if part.git_sha1 is not None and isinstance(old_git, str) and old_git.lower() != part.git_sha1:
            return f"the file changed on the Hub (git SHA-1 {old_git[:12]}… is now {part.git_sha1[:12]}…)"
        if part.size is not None and isinstance(old_size, int) and old_size != part.size:
            return f"the file changed on the Hub ({old_size:,} bytes are now {part.size:,})"
        if (part.sha256 is None or not old_sha) and self.commit and old_commit and old_commit != self.commit:
            return (
                f"the file may have changed on the Hub (commit {str(old_commit)[:12]} "
                f"is now {self.commit[:12]})"
            )
        return None

    def _check_space(self, todo: list[Part]) -> None:
        needed = 0
        for part in todo:
            have = part.part_file.stat().st_size if part.part_file.exists() else 0
            part.done = min(have, part.size or have)
            needed += max(0, (part.size or 0) - part.done)
        free = self.downloader.free_space(self.dest_dir)
        if needed > free:
            raise HubError(
                f"Not enough space: needs {format_size(needed)}, have {format_size(free)} free on "
                f"{self._volume()}. Free some space or choose a smaller file.",
                kind="disk",
            )

    def _install(self, todo: list[Part]) -> None:
        """Move every verified part into place and record where it came from: all parts or none.

        The records are written first and the first part (the one people open) is moved last,
        so a split model never looks installed before every part is; if a move fails, the
        parts already moved go back to their .part files and the old records come back.
        """
        self._check_stop()
        previous: dict[Path, str | None] = {}  # each destination's record before the install
        for part in todo:
            previous[part.dest] = read_sidecar_text(part.dest)
        for part in self._parts:
            if part in todo or read_sidecar(part.dest) is None:
                self._write_record(part.dest, part, complete=True)
        moved: list[Part] = []
        try:
            for part in sorted(todo, key=lambda p: p is self._parts[0]):
                try:
                    os.replace(part.part_file, part.dest)
                except OSError as exc:
                    raise self._write_error(exc, part) from None
                moved.append(part)
        except BaseException:
            self._roll_back(moved, previous)
            raise
        for part in self._parts:  # installed: a record left behind (or a folder in its place) is harmless
            try:
                sidecar_path(part.part_file).unlink(missing_ok=True)
            except OSError as exc:
                log.info("could not remove %s: %s", sidecar_path(part.part_file).name, exc.strerror or exc)

    def _roll_back(self, moved: list[Part], previous: dict[Path, str | None]) -> None:
        """Undo a failed install: moved parts back to their .part files, records as they were."""
        for part in reversed(moved):
            try:
                os.replace(part.dest, part.part_file)
            except OSError as exc:  # the verified file stays installed, with its new record
                log.warning("could not move %s back: %s", part.dest.name, exc.strerror or exc)
                previous.pop(part.dest, None)
        for dest, text in previous.items():
            record = sidecar_path(dest)
            try:
                if text is not None and dest.exists():
                    write_regular_text(record, text)
                else:
                    record.unlink(missing_ok=True)
            except OSError as exc:
                log.info("could not restore %s: %s", record.name, exc.strerror or exc)

    def _write_record(self, path: Path, part: Part, *, complete: bool) -> None:
        """The JSON sidecar that tells the library (and a later resume) where a file comes from."""
        record = {
            "repo_id": self.repo_id,
            "revision": self.revision,
            "commit": self.commit,
            "path_in_repo": part.path,
            "sha256": part.sha256,
            "git_sha1": part.git_sha1,
            "size": part.size,
            "parts": self.filenames,
            "complete": complete,
            "downloaded_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Never into a named pipe with the record's name: opening one would wait for a reader.
            write_regular_text(sidecar_path(path), json.dumps(record, indent=2) + "\n")
        except OSError as exc:
            log.info("could not write %s: %s", sidecar_path(path).name, exc.strerror or exc)
