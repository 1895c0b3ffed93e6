#!/usr/bin/env bash
# Makes sure the system tools the test suite runs for real are present: sshd (the SSH tests),
# the linter shellcheck, sqlite3, zstd, pigz, curl, python3, sudo and busybox (the VM and
# init-container scripts, run for real).
# On Debian/Ubuntu it installs what is missing when it can (root or passwordless sudo); otherwise
# it names the packages and stops, so a missing tool is never mistaken for a passing test.
set -euo pipefail

log() { printf '[ensure-test-tools] %s\n' "$*" >&2; }

# command -> Debian package
declare -A packages=(
  [sshd]=openssh-server
  [ssh]=openssh-client
  [ssh-keygen]=openssh-client
  [shellcheck]=shellcheck
  [sqlite3]=sqlite3
  [zstd]=zstd
  [pigz]=pigz
  [curl]=curl
  [python3]=python3
  [tar]=tar
  [sha256sum]=coreutils
  [sudo]=sudo
  [busybox]=busybox
)

missing=()
for tool in "${!packages[@]}"; do
  if ! command -v "$tool" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$tool" ]; then
    missing+=("${packages[$tool]}")
  fi
done
[ "${#missing[@]}" -eq 0 ] && exit 0

mapfile -t wanted < <(printf '%s\n' "${missing[@]}" | sort -u)
log "missing test tools; Debian packages needed: ${wanted[*]}"
if ! command -v apt-get >/dev/null 2>&1; then
  log "no apt-get here: install the equivalents of: ${wanted[*]}"
  exit 1
fi
sudo=()
if [ "$(id -u)" -ne 0 ]; then
  if sudo -n true 2>/dev/null; then sudo=(sudo -n); else
    log "run: sudo apt-get install -y --no-install-recommends ${wanted[*]}"
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${wanted[@]}" >/dev/null
log "installed: ${wanted[*]}"
