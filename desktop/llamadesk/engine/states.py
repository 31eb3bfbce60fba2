"""Saved conversation states: the model's KV cache of recent conversations, kept across switches
and restarts so reopening a long chat reads only the new message.

A state is the cache of sequence 0 (llama.cpp's own bytes) plus the tokens it holds. The last few
are kept in memory; every state is also written to a folder (a state disk budget, least recently
used out first), so another process (``llamadesk chat --conversation ID``) or the next start finds
it. A state is found by its conversation and a *context* fingerprint (model file path, size and
modification time, chat template, context length, KV cache type, flash attention, llama.cpp
version), and it also records a hash of the system prompt: any difference and it is not used.
Even a state that is used only serves the tokens it shares with the new prompt.

A state file that is short, damaged (checksum) or unreadable is deleted, never loaded.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import hashlib
import json
import logging
import os
import struct
import time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import safejson
from .kv_shift import plan_reuse

if TYPE_CHECKING:
    from .engine import Engine

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_DISK_BUDGET",
    "ConversationStates",
    "SavedState",
    "StateKey",
    "StateStore",
    "cache_fingerprint",
    "capture_state",
    "restore_state",
    "state_key",
]

DEFAULT_DISK_BUDGET = 2048 * 1024 * 1024
MEMORY_SLOTS = 3  # states of the last few conversations kept in RAM
MEMORY_BYTES = 1024**3  # ... as long as they take no more than this together
SUFFIX = ".kvstate"
_MAGIC = b"LLAMADESK-KV\x00\x01"
_HEADER_MAX = 64 * 1024
_TOKENS_MAX = 1 << 24
_STALE_PART_S = 600  # a half-written file this old belongs to no running writer


def cache_fingerprint(path: Path, *, n_ctx: int, kv_cache_type: str, flash: str) -> str:
    """What a KV cache depends on besides its tokens: the model file as it is now and how it was loaded."""
    from . import runtime

    resolved = Path(path).resolve()
    stat = resolved.stat()
    parts = [str(resolved), stat.st_size, stat.st_mtime_ns, n_ctx, kv_cache_type, flash, runtime.version()]
    return hashlib.sha256(json.dumps(parts).encode("utf-8")).hexdigest()


def _digest(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, ensure_ascii=False).encode("utf-8", "replace")).hexdigest()


@dataclass(frozen=True)
class StateKey:
    """Which saved state a reply may start from.

    ``name`` names the conversation (``aliases``: names it had before, looked up when ``name`` has
    no state); ``context`` is the model and load fingerprint plus the chat template; ``system``
    a hash of the system prompt.
    """

    name: str
    context: str
    system: str
    aliases: tuple[str, ...] = ()

    def file_name(self, name: str | None = None) -> str:
        return _digest(name or self.name, self.context)[:40] + SUFFIX


def state_key(
    messages: Sequence[Mapping[str, Any]], *, context: str, conversation: str | None = None
) -> StateKey:
    """The key for ``messages``: ``conversation`` when the front end names it, else one derived from
    how the conversation starts (system prompt, first message, first reply), the same in every
    front end and process."""
    system = ""
    if messages and messages[0].get("role") == "system":
        system = str(messages[0].get("content") or "")
    system_hash = _digest(system)
    if conversation:
        return StateKey("conversation:" + conversation, context, system_hash)
    first_user = next((i for i, m in enumerate(messages) if m.get("role") == "user"), None)
    if first_user is None:
        return StateKey("auto:" + _digest(system, None, None), context, system_hash)
    user = str(messages[first_user].get("content") or "")
    reply = next(
        (str(m.get("content") or "") for m in messages[first_user + 1 :] if m.get("role") == "assistant"),
        None,
    )
    name = "auto:" + _digest(system, user, reply)
    # Until the first reply exists the conversation is known without it: that state is found too.
    aliases = ("auto:" + _digest(system, user, None),) if reply is not None else ()
    return StateKey(name, context, system_hash, aliases)


@dataclass
class SavedState:
    """One conversation's cache: its tokens and llama.cpp's bytes for them."""

    name: str
    context: str
    system: str
    tokens: np.ndarray
    data: bytearray
    where: str = "memory"
    used: float = field(default_factory=time.time)

    @property
    def size(self) -> int:
        return len(self.data) + self.tokens.nbytes


# -- the engine side


def capture_state(llm: Any) -> tuple[np.ndarray, bytearray] | None:
    """The tokens and cache bytes of ``llm``'s sequence 0, or None when it holds nothing."""
    from . import runtime

    low = runtime.llama_cpp().llama_cpp
    n = int(llm.n_tokens)
    if n <= 0:
        return None
    ctx = llm._ctx.ctx
    low.llama_memory_seq_rm(low.llama_get_memory(ctx), -1, n, -1)  # nothing past the tokens it knows
    size = int(low.llama_state_seq_get_size(ctx, 0))
    if size <= 0:
        return None
    data = bytearray(size)
    written = int(low.llama_state_seq_get_data(ctx, (ctypes.c_uint8 * size).from_buffer(data), size, 0))
    if written <= 0:
        return None
    del data[written:]
    return np.array(llm.input_ids[:n], dtype=np.int32), data


def restore_state(llm: Any, tokens: np.ndarray, data: bytearray) -> bool:
    """Put a captured state into ``llm`` (replacing its cache); False, with an empty cache, if refused."""
    from . import runtime

    low = runtime.llama_cpp().llama_cpp
    n = len(tokens)
    ctx = llm._ctx.ctx
    memory = low.llama_get_memory(ctx)
    low.llama_memory_clear(memory, True)
    llm.n_tokens = 0
    if not 0 < n < min(len(llm.input_ids), int(llm.n_ctx())) or not data:
        return False
    read = int(
        low.llama_state_seq_set_data(ctx, (ctypes.c_uint8 * len(data)).from_buffer(data), len(data), 0)
    )
    if read <= 0 or int(low.llama_memory_seq_pos_max(memory, 0)) != n - 1:
        low.llama_memory_clear(memory, True)
        return False
    llm.input_ids[:n] = tokens
    llm.n_tokens = n
    if hasattr(llm, "_requires_eval"):
        llm._requires_eval = True  # the restored cache has no logits: the last token is read again
    return True


# -- files


def _write_file(path: Path, state: SavedState) -> int:
    """Write ``state`` to ``path`` atomically (a part file, then a rename); returns the bytes written."""
    tokens = state.tokens.astype("<i4", copy=False).tobytes()
    checksum = zlib.crc32(state.data, zlib.crc32(tokens))
    header = json.dumps(
        {
            "key": state.name,
            "context": state.context,
            "system": state.system,
            "n_tokens": len(state.tokens),
            "data_size": len(state.data),
            "crc32": checksum,
        }
    ).encode("utf-8")
    part = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        with open(part, "wb") as handle:
            handle.write(_MAGIC + struct.pack("<I", len(header)) + header)
            handle.write(tokens)
            handle.write(state.data)
        os.replace(part, path)
    except BaseException:
        with contextlib.suppress(OSError):
            part.unlink()
        raise
    return len(_MAGIC) + 4 + len(header) + len(tokens) + len(state.data)


class _Unusable(Exception):
    """A state file that must not be loaded; the message says why."""


def _read_file(path: Path, key: StateKey, name: str, *, with_data: bool = True) -> SavedState:
    """The state in ``path``; without ``with_data`` only its tokens (all is checked once data is read)."""
    with open(path, "rb") as handle:
        start = handle.read(len(_MAGIC) + 4)
        if len(start) < len(_MAGIC) + 4 or not start.startswith(_MAGIC):
            raise _Unusable("not a state file")
        (header_len,) = struct.unpack("<I", start[len(_MAGIC) :])
        if header_len > _HEADER_MAX:
            raise _Unusable("header too long")
        try:
            header = safejson.loads(handle.read(header_len).decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise _Unusable(f"unreadable header ({exc})") from None
        if not isinstance(header, dict):
            raise _Unusable("unreadable header")
        n_tokens, data_size, checksum = header.get("n_tokens"), header.get("data_size"), header.get("crc32")
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (n_tokens, data_size, checksum)):
            raise _Unusable("unreadable header")
        assert isinstance(n_tokens, int) and isinstance(data_size, int)
        if not 0 < n_tokens <= _TOKENS_MAX or data_size <= 0:
            raise _Unusable("impossible sizes")
        expected = len(start) + header_len + 4 * n_tokens + data_size
        if os.fstat(handle.fileno()).st_size != expected:
            raise _Unusable("partial or padded file")
        if (header.get("key"), header.get("context")) != (name, key.context):
            raise _Unusable("written for another conversation or model")
        tokens_raw = handle.read(4 * n_tokens)
        if len(tokens_raw) != 4 * n_tokens:
            raise _Unusable("partial file")
        tokens = np.frombuffer(tokens_raw, dtype="<i4").astype(np.int32)
        system = str(header.get("system", ""))
        if not with_data:
            return SavedState(name, key.context, system, tokens, bytearray(), where="disk")
        data = bytearray(data_size)
        if handle.readinto(data) != data_size:
            raise _Unusable("partial file")
    if zlib.crc32(data, zlib.crc32(tokens_raw)) != checksum:
        raise _Unusable("damaged (checksum)")
    return SavedState(name, key.context, system, tokens, data, where="disk")


class StateStore:
    """Saved states in memory (the last few) and in ``folder`` within ``disk_budget`` bytes."""

    def __init__(
        self,
        folder: Path | None,
        *,
        disk_budget: int = DEFAULT_DISK_BUDGET,
        memory_slots: int = MEMORY_SLOTS,
        memory_bytes: int = MEMORY_BYTES,
    ) -> None:
        self.folder = folder
        self._disk_budget = max(int(disk_budget), 0)
        self.memory_slots = memory_slots
        self.memory_bytes = memory_bytes
        self._memory: collections.OrderedDict[str, SavedState] = collections.OrderedDict()

    @property
    def disk_budget(self) -> int:
        return self._disk_budget

    @disk_budget.setter
    def disk_budget(self, value: int) -> None:
        """A new budget (Preferences); files beyond it go at once, least recently used first."""
        self._disk_budget = max(int(value), 0)
        self._trim_disk()

    def get(self, key: StateKey) -> SavedState | None:
        """The usable state for ``key`` (its name, else its aliases), with its data; or None."""
        for state in self.candidates(key):
            full = self.complete(key, state)
            if full is not None:
                return full
        return None

    def candidates(self, key: StateKey) -> list[SavedState]:
        """The states saved under ``key``'s name and aliases; those on disk with their tokens only
        (:meth:`complete` reads and checks the rest). A state for another system prompt is deleted."""
        found = []
        for name in (key.name, *key.aliases):
            file_name = key.file_name(name)
            state = self._memory.get(file_name) or self._load(key, name, file_name, with_data=False)
            if state is None:
                continue
            if state.system != key.system:  # the system prompt changed: never reuse
                self.discard(key, name)
                continue
            found.append(state)
        return found

    def complete(self, key: StateKey, state: SavedState) -> SavedState | None:
        """``state`` with its data (read from disk and checked if need be); None if unusable."""
        file_name = key.file_name(state.name)
        if not state.data:
            loaded = self._load(key, state.name, file_name)
            if loaded is None or loaded.system != key.system:
                return None
            state = loaded
        state.used = time.time()
        if file_name in self._memory:
            self._memory.move_to_end(file_name)
        return state

    def put(self, key: StateKey, tokens: np.ndarray, data: bytearray) -> None:
        """Keep a state for ``key``: in memory and on disk (replacing the older one and its aliases')."""
        state = SavedState(key.name, key.context, key.system, tokens, data)
        for alias in key.aliases:
            self.discard(key, alias)
        file_name = key.file_name()
        self._memory.pop(file_name, None)
        if state.size <= self.memory_bytes and self.memory_slots > 0:
            self._memory[file_name] = state
            while len(self._memory) > self.memory_slots or self._memory_size() > self.memory_bytes:
                self._memory.popitem(last=False)
        if self.folder is None or self._disk_budget <= 0:
            return
        path = self.folder / file_name
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            _write_file(path, state)
        except OSError as exc:
            log.warning("could not save a conversation state to %s: %s", self.folder, exc)
            return
        self._trim_disk(keep=path)

    def discard(self, key: StateKey, name: str | None = None) -> None:
        """Forget the state of ``key`` (or of its alias ``name``) in memory and on disk."""
        file_name = key.file_name(name)
        self._memory.pop(file_name, None)
        if self.folder is not None:
            with contextlib.suppress(OSError):
                (self.folder / file_name).unlink()

    def clear_memory(self) -> None:
        """Free the states held in RAM (the model they belong to is unloading); the files stay."""
        self._memory.clear()

    def _memory_size(self) -> int:
        return sum(state.size for state in self._memory.values())

    def _load(self, key: StateKey, name: str, file_name: str, *, with_data: bool = True) -> SavedState | None:
        if self.folder is None:
            return None
        path = self.folder / file_name
        try:
            state = _read_file(path, key, name, with_data=with_data)
        except FileNotFoundError:
            return None
        except (OSError, _Unusable) as exc:
            log.warning("ignoring and deleting the conversation state %s: %s", path.name, exc)
            with contextlib.suppress(OSError):
                path.unlink()
            return None
        with contextlib.suppress(OSError):
            os.utime(path)  # recently used: evicted last
        return state

    def _trim_disk(self, keep: Path | None = None) -> None:
        """Delete the least recently used files until the folder fits the budget, and stale part files."""
        if self.folder is None or not self.folder.is_dir():
            return
        files: list[tuple[float, int, Path]] = []
        now = time.time()
        try:
            entries = list(os.scandir(self.folder))
        except OSError:
            return
        for entry in entries:
            try:
                if not entry.is_file(follow_symlinks=False):
                    continue
                stat = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            path = Path(entry.path)
            if entry.name.endswith(".part"):
                if now - stat.st_mtime > _STALE_PART_S:
                    with contextlib.suppress(OSError):
                        path.unlink()
                continue
            if entry.name.endswith(SUFFIX):
                files.append((stat.st_mtime, stat.st_size, path))
        total = sum(size for _, size, _ in files)
        files.sort(key=lambda item: (item[2] == keep, item[0]))  # the file just written goes last
        for _, size, path in files:
            if total <= self._disk_budget:
                break
            with contextlib.suppress(OSError):
                path.unlink()
                total -= size


class ConversationStates:
    """Which conversation the engine's cache holds, and the saved states of the others.

    The service calls :meth:`prepare` before each reply, :meth:`finished` after it and
    :meth:`unloading` before the model goes; all on its own thread.
    """

    def __init__(self, store: StateStore | None = None) -> None:
        self.store = store or StateStore(None)
        self._live: StateKey | None = None  # whose tokens the cache holds
        self._dirty = False  # the cache changed since it was last saved

    @classmethod
    def in_folder(cls, folder: Path, *, disk_budget: int = DEFAULT_DISK_BUDGET) -> ConversationStates:
        """States kept in ``folder`` within ``disk_budget`` bytes (and the last few in memory)."""
        return cls(StateStore(folder, disk_budget=disk_budget))

    @property
    def disk_budget(self) -> int:
        """Bytes the saved states may take on disk (Preferences); a smaller budget applies at once."""
        return self.store.disk_budget

    @disk_budget.setter
    def disk_budget(self, value: int) -> None:
        self.store.disk_budget = value

    def prepare(self, engine: Engine, key: StateKey | None, prompt: Sequence[int], head: int | None) -> str:
        """Before a reply to ``prompt``: save the cache of the conversation it belonged to if another
        one is starting, and restore ``key``'s state when it serves more of the prompt than the cache.
        Returns "memory" or "disk" when a state was restored, else ""."""
        live = self._live
        if (
            key is not None
            and live is not None
            and live.context == key.context
            and (live.name == key.name or live.name in key.aliases)
        ):
            self._live = key  # the same conversation goes on (under its newest name)
            return ""
        self.park(engine)
        self._live = key
        if key is None:
            return ""
        # The saved state (under this name or an older one) that serves most of the prompt, if it
        # serves more than the cache does now.
        best, best_reused = None, plan_reuse(engine.cached_tokens(), prompt, head=head).reused
        for candidate in self.store.candidates(key):
            reused = plan_reuse(candidate.tokens, prompt, head=head).reused
            if reused > best_reused:
                best, best_reused = candidate, reused
        saved = self.store.complete(key, best) if best is not None else None
        if saved is None:
            return ""
        if not engine.restore_state(saved.tokens, saved.data):
            log.warning("llama.cpp refused a saved conversation state; it is deleted")
            self.store.discard(key, saved.name)
            return ""
        self._dirty = False
        return saved.where

    def finished(self, key: StateKey | None) -> None:
        """After a reply: the cache holds ``key``'s conversation (and has changed)."""
        self._live = key
        self._dirty = key is not None

    def park(self, engine: Engine) -> None:
        """Save the cache for the conversation it holds, if it changed since it was last saved."""
        live, dirty = self._live, self._dirty
        self._dirty = False
        if live is None or not dirty or not engine.is_loaded:
            return
        try:
            captured = engine.save_state()
        except Exception:  # a state is only ever a shortcut: never fail a reply over it
            log.exception("could not capture the conversation state")
            return
        if captured is not None:
            self.store.put(live, *captured)

    def abandon(self) -> None:
        """The engine's cache can no longer be read (its RPC worker went away): no conversation is live,
        and nothing is saved from it; the states already saved stay."""
        self._live, self._dirty = None, False

    def unloading(self, engine: Engine) -> None:
        """Before the model is freed: save the live state and let go of the ones in memory."""
        self.park(engine)
        self._live = None
        self.store.clear_memory()
