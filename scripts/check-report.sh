#!/usr/bin/env bash
# Screenshot a run's report as a colleague's browser shows it: headless Chromium at 1280 px.
#
#   scripts/check-report.sh RUN [OUT]
#
# RUN: a run folder, or a run's name in results/ (latest too). OUT (default: RUN/screenshots)
# receives top.png (the first screen: what ran, the summary), failed.png (report.html#failed:
# the summary filtered to failed cases), failed-cases.png (8000 px of that page: the failed
# cases' sections) and full.png (the first 12000 px of the page), the tall ones also cut in
# 2000 px tiles (full-1.png ...). Look at them: no text cut off or overlapping, no table
# wider than the page, plots legible, every failure's reason in the summary.
# Needs chromium (apt-get install -y chromium); exit 2 when it or the report is missing.
set -euo pipefail

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    echo "usage: scripts/check-report.sh RUN [OUT]" >&2
    exit 2
fi
# RUN and OUT as given, from where the script was called; else a run in the checkout's results/
run="$1"
[ -d "$run" ] || run="$(dirname "$0")/../results/$1"
[ $# -lt 2 ] || { mkdir -p "$2" && set -- "$1" "$(realpath "$2")"; }
run="$(realpath "$run" 2>/dev/null || echo "$run")"
cd "$(dirname "$0")/.."
report="$run/report.html"
if [ ! -f "$report" ]; then
    echo "check-report: $1: no report.html (neither a run folder nor a run in results/)" >&2
    exit 2
fi
browser="$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)"
if [ -z "$browser" ]; then
    echo "check-report: no chromium: install it (apt-get install -y chromium)" >&2
    exit 2
fi
out="${2:-$run/screenshots}"
mkdir -p "$out"
url="file://$(realpath "$report")"
WIDTH=1280

shot() {  # shot FILE HEIGHT URL: one screenshot, bounded in time
    # --no-sandbox: Chromium refuses to start as root with its sandbox; the page is our own file
    timeout 60 "$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars \
        --run-all-compositor-stages-before-draw --virtual-time-budget=5000 \
        --window-size="$WIDTH,$2" --screenshot="$1" "$3" >/dev/null 2>&1 || {
        echo "check-report: chromium could not screenshot $3" >&2
        exit 1
    }
    echo "$1"
}

shot "$out/top.png" 1000 "$url"
shot "$out/failed.png" 1000 "$url#failed"
shot "$out/failed-cases.png" 8000 "$url#failed"
shot "$out/full.png" 12000 "$url"
# the tall ones in 2000 px tiles, a size an image viewer shows whole
.venv/bin/python - "$out" <<'PY'
import sys
from pathlib import Path
from PIL import Image

out = Path(sys.argv[1])
for name in ("failed-cases", "full"):
    image = Image.open(out / f"{name}.png")
    for n, top in enumerate(range(0, image.height, 2000)):
        image.crop((0, top, image.width, min(top + 2000, image.height))).save(out / f"{name}-{n + 1}.png")
        print(out / f"{name}-{n + 1}.png")
PY
