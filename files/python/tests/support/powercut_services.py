"""The buffer server's services, one after another, in one process: what one boot of the
machine runs in the power-cut tests (support/powercut.py).

`python powercut_services.py CONFIG LOG COMMAND...`: each COMMAND ("ingest --once",
"archive --once", "purge") is run through `embuffer.cli.main` exactly as its systemd unit
would run it; before each, a `PHASE` line goes to LOG (the power-cut filesystem writes its
cut points to the same file, so every cut point falls in the phase written before it), and
after each an `RC` line with its exit code. One process for the boot and not one per
service: the start-up (about 0.2 s of imports) is paid once per boot, and nothing of one
command's state outlives its `main()` call.
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    config, log_path, *commands = argv
    from embuffer.cli import main as embuffer_main

    worst = 0
    with open(log_path, "a", buffering=1) as log:
        for command in commands:
            log.write(f"PHASE {command}\n")
            code = embuffer_main(["--config", config, *command.split()])
            log.write(f"RC {command.split()[0]} {code}\n")
            worst = max(worst, code)
    return worst


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
