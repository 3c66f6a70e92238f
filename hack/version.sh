#!/usr/bin/env bash
# version.sh — the version of this checkout, for binaries, the image and the
# release: the nearest v* tag as `git describe` writes it (v1.2.0,
# v1.2.0-3-gabc1234), or v0.0.0-<commits>-g<hash> before the first tag, so it
# is always a semantic version (krew and Helm need one). "-dirty" when the
# tree has uncommitted changes.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if v="$(git describe --tags --match 'v[0-9]*' --dirty 2>/dev/null)"; then
	echo "$v"
	exit 0
fi
dirty=""
git diff --quiet HEAD -- 2>/dev/null || dirty="-dirty"
echo "v0.0.0-$(git rev-list --count HEAD)-g$(git rev-parse --short HEAD)$dirty"
