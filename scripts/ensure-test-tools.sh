#!/usr/bin/env bash
# Makes sure the system tools the test suite runs for real are present: sshd (the SSH tests),
# the linter shellcheck, sqlite3, curl, python3, sudo, busybox and rsync (the VM and
# init-container scripts, run for real), mke2fs/dumpe2fs (the volume sizing is checked against real
# ext4), xmlstarlet and unshare (the Plex container's setup script, run on a private /etc) and Helm
# (renders the vendored Plex chart).
# On Debian/Ubuntu it installs what is missing when it can (root or passwordless sudo); otherwise
# it names the packages and stops, so a missing tool is never mistaken for a passing test.
set -euo pipefail

log() { printf '[ensure-test-tools] %s\n' "$*" >&2; }

# Helm, built from its Go module at a pinned release into the repository's tool cache, where
# test/support/helm.ts looks for it. Idempotent: an existing binary of that module version is
# kept; a rebuild after a fresh clone reuses Go's module and build caches.
HELM_MODULE=helm.sh/helm/v3
HELM_VERSION=v3.22.0
ensure_helm() {
  local bin_dir
  bin_dir="${PLEX_MIGRATE_TOOLS_DIR:-$(cd "$(dirname "$0")/.." && pwd)/.tools}/bin"
  if [ -x "$bin_dir/helm" ] && command -v go >/dev/null 2>&1 &&
    go version -m "$bin_dir/helm" 2>/dev/null |
    awk -v m="$HELM_MODULE" -v v="$HELM_VERSION" '$1 == "mod" && $2 == m && $3 == v { ok = 1 } END { exit !ok }'; then
    return 0
  fi
  if ! command -v go >/dev/null 2>&1; then
    log "Helm $HELM_VERSION is built with Go, which is not installed: install Go 1.26 or newer (https://go.dev/dl/) and re-run"
    exit 1
  fi
  log "building Helm $HELM_VERSION into $bin_dir (go install $HELM_MODULE/cmd/helm@$HELM_VERSION)"
  mkdir -p "$bin_dir"
  GOBIN="$bin_dir" go install "$HELM_MODULE/cmd/helm@$HELM_VERSION"
}
ensure_helm

# command -> Debian package
declare -A packages=(
  [sshd]=openssh-server
  [ssh]=openssh-client
  [ssh-keygen]=openssh-client
  [shellcheck]=shellcheck
  [sqlite3]=sqlite3
  [curl]=curl
  [python3]=python3
  [tar]=tar
  [sha256sum]=coreutils
  [sudo]=sudo
  [busybox]=busybox
  [rsync]=rsync
  [rrsync]=rsync
  [mke2fs]=e2fsprogs
  [dumpe2fs]=e2fsprogs
  [xmlstarlet]=xmlstarlet
  [unshare]=util-linux
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
