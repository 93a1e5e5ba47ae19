#!/usr/bin/env bash
# Create or update the project's virtual environment (.venv).
#   scripts/setup.sh serve   runtime only: what `emostream serve` needs (no torch)
#   scripts/setup.sh dev     everything: training extra, test and lint tools, system packages
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-serve}"
python="${PYTHON:-python3}"

need_apt=()
# One list of system programs: scripts/system-packages.txt. `dev` needs every one (the suite
# and the benchmarks run them); `serve` needs only those marked "serve" (npm, which installs
# the page's chart library).
while read -r program package modes; do
    case "$program" in ''|'#'*) continue ;; esac
    [ "$mode" = dev ] || [[ " $modes " == *" $mode "* ]] || continue
    command -v "$program" >/dev/null 2>&1 || need_apt+=("$package")
done < scripts/system-packages.txt
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "setup: installing system packages: ${need_apt[*]}"
    sudo_cmd=""
    [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi

# The browser app's library (uPlot), pinned with its integrity hash in web/package-lock.json,
# installed into web/node_modules, which the server serves at /lib/ (docs/web.md).
if [ ! -f web/node_modules/.package-lock.json ] || [ web/package-lock.json -nt web/node_modules/.package-lock.json ]; then
    npm ci --prefix web --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error
fi

[ -x .venv/bin/python ] || "$python" -m venv .venv
stamp=".venv/.installed-$mode"
lock="requirements/$mode.txt"
if [ -f "$stamp" ] && [ "$stamp" -nt "$lock" ] && [ "$stamp" -nt pyproject.toml ]; then
    exit 0
fi
# Exactly the lock (every package pinned with its hashes; the CPU build of torch in dev.txt),
# then the project itself, built by the locked setuptools. pip-sync would also remove what the
# lock no longer has; --require-hashes refuses anything the lock does not name.
pip=(.venv/bin/python -m pip install -q --disable-pip-version-check)
"${pip[@]}" --require-hashes --no-deps -r "$lock"
"${pip[@]}" --no-deps --no-build-isolation -e .
.venv/bin/python -m pip check
touch "$stamp"
