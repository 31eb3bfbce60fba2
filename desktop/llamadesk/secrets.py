"""Secrets (the Hugging Face token, API keys) in the system keyring, or in private files where there is none.

The keyring is the platform's own store (macOS Keychain, Windows Credential Locker, the Secret
Service of GNOME/KDE), reached through the ``keyring`` library under the service name
"LlamaDesk", one entry per secret name. Where it cannot be used, a secret is a file of its name
in the config folder, readable by the user only (0600), as LlamaDesk always kept the token.

Which one is used:

- ``LLAMADESK_KEYRING=file``: always the files.
- ``LLAMADESK_KEYRING=system``: the keyring, falling back to the files when it does not work.
- unset: the keyring, except when ``LLAMADESK_HOME`` is set. A portable install and the test
  suite (both set ``LLAMADESK_HOME``) keep their secrets beside their other files and never
  read or write the keyring of the user running them.

"Does not work" means keyring found no usable backend (its ``fail`` or ``null`` backend) or a
call to it raised; then this store uses the files until it is created again, and says so once
in the log. When the keyring works and a file for a secret exists (an older LlamaDesk wrote the
token there, or the keyring failed earlier), the file's value moves into the keyring and the
file is removed. Keyring calls can block while the system asks the user to unlock it.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .files import PRIVATE_MODE, atomic_write_text, read_regular_bytes
from .paths import HOME_ENV

log = logging.getLogger(__name__)

SERVICE = "LlamaDesk"
KEYRING_ENV = "LLAMADESK_KEYRING"
HF_TOKEN = "hf_token"  # the Hugging Face access token; its file name is the one older versions used
MAX_SECRET_BYTES = 64 * 1024  # tokens and keys are a few hundred bytes; a larger file is not one

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


def keyring_wanted(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the environment allows the system keyring (see the module docstring)."""
    env = os.environ if environ is None else environ
    choice = env.get(KEYRING_ENV, "").strip().lower()
    if choice == "file":
        return False
    if choice == "system":
        return True
    if choice:
        log.warning("%s=%s is not 'file' or 'system'; using the default", KEYRING_ENV, choice)
    return not env.get(HOME_ENV)


class SecretStore:
    """Reads and writes named secrets; ``folder`` holds the fallback files (the config folder).

    ``use_keyring`` None decides from the environment, False never touches the keyring, True
    uses it when it works. Values are stripped of surrounding whitespace; an empty one deletes.
    """

    def __init__(self, folder: Path, *, use_keyring: bool | None = None) -> None:
        self.folder = folder
        self._wanted = keyring_wanted() if use_keyring is None else use_keyring
        self._backend: Any = None  # the keyring backend once it proved usable
        self._failed = not self._wanted

    @property
    def uses_keyring(self) -> bool:
        """True while secrets go to the system keyring (False: to files in ``folder``)."""
        return self._keyring() is not None

    def file_for(self, name: str) -> Path:
        """The fallback file of secret ``name``."""
        if not _NAME_RE.match(name):
            raise ValueError(f"secret names are lowercase letters, digits, '_', '.', '-': {name!r}")
        return self.folder / name

    def get(self, name: str) -> str | None:
        """The secret ``name``, or None when none is stored."""
        path = self.file_for(name)
        from_file = _read(path)
        backend = self._keyring()
        if backend is None:
            return from_file
        if from_file is not None:
            self._move_to_keyring(backend, name, from_file, path)
            return from_file
        try:
            value = backend.get_password(SERVICE, name)
        except Exception as exc:  # each keyring backend raises its own types
            self._give_up(exc)
            return None
        return (value.strip() or None) if isinstance(value, str) else None

    def set(self, name: str, value: str) -> None:
        """Store ``value`` as secret ``name``; an empty value deletes it.

        Raises ``OSError`` only when the keyring is not used and the file could not be written.
        """
        value = value.strip()
        if not value:
            self.delete(name)
            return
        path = self.file_for(name)
        backend = self._keyring()
        if backend is not None:
            try:
                backend.set_password(SERVICE, name, value)
            except Exception as exc:  # each keyring backend raises its own types
                self._give_up(exc)
            else:
                path.unlink(missing_ok=True)  # an older copy must not win over the keyring next time
                return
        atomic_write_text(path, value + "\n", mode=PRIVATE_MODE)

    def delete(self, name: str) -> None:
        """Forget secret ``name`` wherever it is kept; nothing happens when there is none."""
        path = self.file_for(name)
        backend = self._keyring()
        if backend is not None:
            try:
                if backend.get_password(SERVICE, name) is not None:
                    backend.delete_password(SERVICE, name)
            except Exception as exc:  # each keyring backend raises its own types
                self._give_up(exc)
        path.unlink(missing_ok=True)

    # --- internals --------------------------------------------------------------------------

    def _keyring(self) -> Any:
        """The usable keyring backend, or None (files are used)."""
        if self._failed:
            return None
        if self._backend is None:
            try:
                import keyring
                from keyring.backends import fail, null

                backend = keyring.get_keyring()
            except Exception as exc:  # a broken keyring configuration must not stop the app
                self._give_up(exc)
                return None
            chained = getattr(backend, "backends", None)
            if isinstance(backend, (fail.Keyring, null.Keyring)) or chained == []:
                self._give_up(None)
                return None
            self._backend = backend
        return self._backend

    def _move_to_keyring(self, backend: Any, name: str, value: str, path: Path) -> None:
        """Put a secret found in its file into the keyring and remove the file (kept on failure)."""
        try:
            backend.set_password(SERVICE, name, value)
            stored = backend.get_password(SERVICE, name)
        except Exception as exc:  # each keyring backend raises its own types
            self._give_up(exc)
            return
        if stored != value:
            self._give_up(RuntimeError("the keyring did not return what was stored"))
            return
        try:
            path.unlink()
        except OSError as exc:
            log.warning("%s was copied to the system keyring but could not be removed: %s", path, exc)
            return
        log.info("moved %s into the system keyring", path)

    def _give_up(self, error: BaseException | None) -> None:
        """Use the files from now on, saying why once."""
        if not self._failed:
            reason = f"{type(error).__name__}: {error}" if error is not None else "no keyring backend"
            log.warning("the system keyring cannot be used (%s); secrets are kept in %s", reason, self.folder)
        self._failed = True
        self._backend = None


def _read(path: Path) -> str | None:
    """A secret file's value, or None when it is missing, empty or unreadable.

    A named pipe, device or folder in its place is not opened, and a file over ``MAX_SECRET_BYTES``
    is not read: neither can hold a secret LlamaDesk wrote.
    """
    try:
        text = read_regular_bytes(path, limit=MAX_SECRET_BYTES).decode("utf-8").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        log.warning("the secret file %s can't be used: %s", path, getattr(exc, "strerror", None) or exc)
        return None
    return text or None
