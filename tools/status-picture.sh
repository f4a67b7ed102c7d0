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
# Two adjustments for librsvg, which ignores textLength and strips the no-break spaces that
# pad each run of text: keep every space, and size the font so that DejaVu Sans Mono's
# advance (0.602 em) fills the 12.2 px cell rich lays the screen out in (0.61 em of 20 px).
tuned=$(mktemp --suffix=.svg)
trap 'rm -f "$tuned"' EXIT
sed -e 's/<svg /<svg xml:space="preserve" /' -e 's/font-size: 20px;/font-size: 20.26px;/' "$SVG" > "$tuned"
rsvg-convert --background-color=white -o "$PNG.tmp" "$tuned"
mv "$PNG.tmp" "$PNG"
echo "wrote $PNG from $SVG"
