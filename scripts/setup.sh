#!/usr/bin/env bash
# Sets up SynthLab on a fresh machine: Debian data packages, a virtual environment
# in .venv, PyTorch (CPU build pinned where no GPU is present) and the synthlab
# package with its test, training and server extras. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${SYNTHLAB_VENV:-.venv}
DATA_PACKAGES="mricron-data insighttoolkit5-examples"

install_debian_data() {
    command -v apt-get >/dev/null || { echo "setup: no apt-get; skipping Debian data packages ($DATA_PACKAGES)"; return; }
    local missing=""
    for pkg in $DATA_PACKAGES; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing="$missing $pkg"
    done
    [ -z "$missing" ] && return
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    echo "setup: installing Debian data packages:$missing"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null
}

install_debian_data
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP="$VENV/bin/python -m pip"
$PIP install -q --upgrade pip
# A pinned torch keeps CPU-only machines off the multi-GB CUDA wheels; set
# SYNTHLAB_TORCH=torch on a GPU machine to take the registry's default build.
$PIP install -q "${SYNTHLAB_TORCH:-torch==2.13.0}"
$PIP install -q -e ".[test,train,serve]"
echo "setup: ready ($VENV)"
