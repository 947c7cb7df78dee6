#!/usr/bin/env bash
# Installs stemforge and what it needs on a fresh Debian machine.
#   bash scripts/setup.sh          the package (torch pinned to the local CPU wheel by constraints.txt)
#   bash scripts/setup.sh --test   the package plus test tools and the Debian packages the tests use
set -euo pipefail
cd "$(dirname "$0")/.."
extras=""
if [ "${1:-}" = "--test" ]; then extras="[test]"; fi

# Debian packages (FluidSynth + a GM soundfont for the synthetic corpus), listed in .ci/apt-packages.txt.
if [ -s .ci/apt-packages.txt ] && ! xargs -a .ci/apt-packages.txt dpkg -s >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  xargs -a .ci/apt-packages.txt $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends
fi

python -m pip install -q -c constraints.txt -e ".${extras}"
