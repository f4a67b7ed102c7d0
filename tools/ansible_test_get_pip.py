"""Stand-in for the get-pip.py that ansible-test downloads to bootstrap pip in its sanity venvs.

ansible-test fetches get-pip-<version>.py from a CI host of the Ansible project that this
machine (and CI) cannot reach, and uses a copy in ~/.ansible/test/cache/get_pip_<version>.py
instead when one is there. tools/collection.sh puts this file there, beside the pip wheel of that
version downloaded from PyPI with the project's own pip (pip-<version>-py3-none-any.whl).

Like get-pip.py, it is run in a venv that has no pip yet, with pip's install options and the
packages to install (`pip==<version>`) plus get-pip's own --no-setuptools and --no-wheel; it
runs pip from the wheel (a wheel is importable as a zip) to install pip from that same wheel.
"""

from __future__ import annotations

import glob
import os
import sys

# get_pip_24_2.py -> 24.2
VERSION = os.path.splitext(os.path.basename(__file__))[0].removeprefix("get_pip_").replace("_", ".")
CACHE = os.path.dirname(os.path.abspath(__file__))
# get-pip.py's own switches: pip install would reject them (no setuptools or wheel is asked for).
GET_PIP_ONLY = {"--no-setuptools", "--no-wheel"}


def main() -> int:
    wheels = glob.glob(os.path.join(CACHE, f"pip-{VERSION}-py3-none-any.whl"))
    if not wheels:
        print(f"no pip {VERSION} wheel in {CACHE}: run tools/collection.sh", file=sys.stderr)
        return 1
    sys.path.insert(0, wheels[0])
    from pip._internal.cli.main import main as pip_main

    options = [argument for argument in sys.argv[1:] if argument not in GET_PIP_ONLY]
    # Only the wheel beside this file: the bootstrap must not depend on an index.
    return pip_main(["install", "--no-index", "--find-links", CACHE, *options])


if __name__ == "__main__":
    sys.exit(main())
