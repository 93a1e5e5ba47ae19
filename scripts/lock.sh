#!/usr/bin/env bash
# Re-resolve the Python lock files from pyproject.toml (docs/dependencies.md):
#   scripts/lock.sh              keep today's pins where they still satisfy pyproject.toml
#   scripts/lock.sh --upgrade    take the newest release of everything (then run ./check)
#   scripts/lock.sh --upgrade-package NAME   move one package only
# requirements/dev.txt holds everything (runtime, [train], [dev], the build backend);
# requirements/serve.txt the runtime only, resolved from dev.txt's pins so that the two agree
# (tests/test_lock.py checks both against pyproject.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-python3}"
tool=".venv-lock"
[ -x "$tool/bin/pip-compile" ] || {
    "$python" -m venv "$tool"
    "$tool/bin/python" -m pip install -q --disable-pip-version-check "pip-tools==7.7.0"
}
common=(--quiet --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url
        --no-emit-find-links --constraint=requirements/constraints.in)
"$tool/bin/pip-compile" "${common[@]}" "$@" --extra=train --extra=dev \
    --output-file=requirements/dev.txt pyproject.toml requirements/build.in
# serve.txt starts from dev.txt's pins: pip-compile keeps an output file's existing pins.
cp requirements/dev.txt requirements/serve.txt
"$tool/bin/pip-compile" "${common[@]}" \
    --output-file=requirements/serve.txt pyproject.toml requirements/build.in
echo "lock: requirements/dev.txt and requirements/serve.txt written; run ./check"
