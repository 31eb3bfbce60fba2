"""``llamadesk`` with no arguments opens the app; with a subcommand it runs the CLI."""

from __future__ import annotations

import gc
import sys


def main(argv: list[str] | None = None) -> int:
    if getattr(sys, "frozen", False):  # the bundled app: document indexing runs in spawned processes
        import multiprocessing

        multiprocessing.freeze_support()
    args = sys.argv[1:] if argv is None else argv
    if not args:
        from .app import run_app

        return run_app()
    gc.disable()  # the command line's start-up makes no garbage worth collecting (see llamadesk.cli)
    from .cli import main as cli_main

    return cli_main(args, exiting=True)


if __name__ == "__main__":
    sys.exit(main())
