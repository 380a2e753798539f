#!/usr/bin/env bash
# Installs what trustdeck needs to build and test on Debian 12 (run as root; idempotent).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)

need_pkgs=()
for p in g++ protobuf-compiler postgresql openssl tmux python3-venv softhsm2 opensc swtpm swtpm-tools tpm2-tools libtss2-dev pkg-config; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need_pkgs+=("$p")
done
if [ ${#need_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing packages ${need_pkgs[*]}; run as root or install them" >&2
    exit 1
  fi
  echo "setup: installing ${need_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

# Python clients for the end-to-end tests (py-spiffe), in a private virtualenv.
venv=${TRUSTDECK_VENV:-$HOME/.cache/trustdeck/venv}
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import spiffe' 2>/dev/null; then
  echo "setup: creating $venv with py-spiffe"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$here/tests/python/requirements.txt"
fi
