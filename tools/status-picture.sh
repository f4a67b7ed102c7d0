#!/bin/bash
# Make the README's picture of the status screen from the last `make demo`: the demo captured
# what `embuffer status` printed on the buffer host (.work/demo/status.ansi) and rich drew
# it as an SVG (tools/status_svg.py); this renders that SVG to a PNG with librsvg.
#   tools/status-picture.sh [SVG [PNG]]   (defaults: .work/demo/status.svg docs/images/embuffer-status.png)
set -euo pipefail
cd "$(dirname "$0")/.."
SVG=${1:-.work/demo/status.svg}
PNG=${2:-docs/images/embuffer-status.png}
[ -s "$SVG" ] || { echo "no $SVG: run make demo first" >&2; exit 1; }
# rsvg-convert, and a monospace font with box-drawing characters (the SVG's web font is not
# fetched; fontconfig's monospace stands in for it)
packages=(librsvg2-bin fonts-dejavu-core)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
mkdir -p "$(dirname "$PNG")"
rsvg-convert --background-color=white -o "$PNG.tmp" "$SVG"
mv "$PNG.tmp" "$PNG"
echo "wrote $PNG from $SVG"
