"""Turn a terminal capture (text with ANSI colours, as `embuffer status` printed it) into an SVG.

Usage: status_svg.py [--title TITLE] < capture.ansi > screen.svg

rich draws the picture from the capture itself (the same library that drew the screen), so
the picture shows exactly what the terminal showed. tools/demo.sh captures the screen;
tools/status-picture.sh turns the SVG into the README's PNG.
"""

import argparse
import io
import sys

from rich.console import Console
from rich.text import Text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--title", default="embuffer status")
    args = parser.parse_args()
    screen = Text.from_ansi(sys.stdin.read().rstrip("\n"))
    width = max((line.cell_len for line in screen.split("\n")), default=80)
    console = Console(record=True, width=width, file=io.StringIO(), color_system="truecolor")
    console.print(screen, soft_wrap=True)
    sys.stdout.write(console.export_svg(title=args.title))
    return 0


if __name__ == "__main__":
    sys.exit(main())
