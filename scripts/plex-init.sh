#!/bin/sh
# plex-init.sh: copies the Plex data directory from the VM into the config volume of the
# plex-media-server chart with rsync over SSH, read-only on the VM (the migration key may only
# run a read-only rsync server confined to the data directory, see plex-migrate-source.sh
# authorize-sync). It runs twice, in two phases:
#
#   warm   a Kubernetes Job, while Plex still runs on the VM: copies the whole data directory
#          into a staging directory on the volume. Re-running it resumes from what is there.
#   final  the Plex pod's init container, after Plex was stopped on the VM: transfers what
#          changed since the warm copy (new and modified files, deletions), then proves the copy
#          equals the stopped source (a second pass that finds nothing to change, and the sha256
#          of each Plex database taken on the VM after the stop), moves it into place and writes
#          the marker. Only then does the pod start Plex.
#
# What it guarantees:
#   * $PLEX_CONFIG_DIR/Library is either absent or the complete, verified library: the copy is
#     made in $PLEX_CONFIG_DIR/.plex-migrate/staging and renamed into place after the checks.
#   * Exit 0 in the final phase only with the library in place and verified; any failure (cut
#     connection, full volume, changed host key, a source that still changes) exits non-zero,
#     so Kubernetes never starts Plex on a partial library. The staging copy is kept: the next
#     run resumes from it.
#   * Idempotent: the marker $PLEX_CONFIG_DIR/.plex-migrate/import-complete (written last) makes
#     every later run of the same transfer generation a no-op, even when the VM is gone. A marker
#     of an older generation is not "done": the VM is copied again into staging, and once that
#     copy is verified the older library is moved to .plex-migrate/replaced-generation-<n> (kept,
#     never deleted) and the new one takes its place.
#   * The VM's SSH host key is pinned: an unknown or changed key is refused.
#   * Files end up owned by PLEX_UID:PLEX_GID (rsync --chown), modes, mtimes (to the nanosecond),
#     hard links, symlinks (as links, never followed) and sparse files as on the VM.
#   * Nothing is installed at run time: the image must have rsync, an OpenSSH client and a POSIX
#     sh (the default instrumentistco/rsync-ssh image does); missing tools are named.
#
# Settings (environment variables):
#   PLEX_SYNC_PHASE            warm | final (required)
#   PLEX_CONFIG_DIR            config volume (default /config)
#   PLEX_SYNC_HOST             address of the VM as the cluster reaches it (required)
#   PLEX_SYNC_PORT             its SSH port (default 22)
#   PLEX_SYNC_USER             SSH user the migration key is authorized for (required)
#   PLEX_SYNC_KEY_FILE         the migration's private key (default /plex-migrate-sync/id_ed25519)
#   PLEX_SYNC_KNOWN_HOSTS      pinned host key(s), lines "plex-migrate-vm <type> <base64>"
#                              (default /plex-migrate-sync/known_hosts)
#   PLEX_SYNC_DATABASES        final phase: one line per Plex database, "<sha256> <bytes> <path
#                              relative to the data directory>", measured on the VM after the stop
#   PLEX_SYNC_EXCLUDES         top-level folders of the data directory not copied, one per line
#   PLEX_REQUIRED_BYTES        bytes the copy needs (lib/plex/sizing.ts requiredConfigBytes of
#                              the preflight's library size), for the free-space check
#   PLEX_REQUIRED_INODES       inodes the copy needs (lib/plex/sizing.ts requiredConfigInodes of
#                              the preflight's file count), for the free-inode check
#   PLEX_UID / PLEX_GID        owner of the copied files (default 1000 / 1000, pms-docker's plex)
#   PLEX_SYNC_GENERATION       the stack's transferGeneration (default 1), recorded in the marker
#   PLEX_SYNC_RETRIES          attempts after a broken transfer before giving up (default 5)
#   PLEX_SYNC_RETRY_DELAY      first wait between attempts in seconds, doubled up to 30 (default 2)
#   PLEX_SYNC_IO_TIMEOUT       rsync --timeout: seconds without data before an attempt is broken
#                              off and retried (default 300)
#   PLEX_SYNC_CONNECT_TIMEOUT  seconds to wait for the SSH connection (default 20)
#   PLEX_SYNC_MAX_RATE         optional rsync --bwlimit, e.g. 50M
#   PLEX_INIT_TMPDIR           scratch for the key and SSH config, not on the volume (default
#                              $TMPDIR or /tmp)
#
# Exit codes:
#   0 copied (warm), copied and verified (final), or imported earlier (marker present)
#   2 bad settings
#   3 required tools missing from the image
#   4 not enough free space or free inodes on the volume
#   5 the transfer failed (retries exhausted, or an error rsync does not recover from)
#   6 the copy does not equal the stopped source (the source still changes, or a database
#     checksum differs)
#   7 the VM's SSH host key is not the pinned one (or none is pinned)
#   8 $PLEX_CONFIG_DIR/Library exists but this script did not create it; left untouched
#   9 the source is not a Plex data directory (no Preferences.xml)
#  10 interrupted (SIGINT/SIGTERM)
#  11 the VM refused the migration key (not authorized, revoked, or the forced command refused)
set -eu

CONFIG_DIR=${PLEX_CONFIG_DIR:-/config}
STATE_DIR=$CONFIG_DIR/.plex-migrate
MARKER=$STATE_DIR/import-complete
RECEIPT=$STATE_DIR/verified
WARM_DONE=$STATE_DIR/warm-complete
STAGING=$STATE_DIR/staging
RSYNC_TMP=$STATE_DIR/rsync-tmp
LOG_FILE=$STATE_DIR/sync.log
LIBRARY=$CONFIG_DIR/Library
PLEX_DATA_RELATIVE="Library/Application Support/Plex Media Server"
DATA_STAGE=$STAGING/$PLEX_DATA_RELATIVE
HOST_ALIAS=plex-migrate-vm

EXIT_SETTINGS=2
EXIT_TOOLS=3
EXIT_SPACE=4
EXIT_TRANSFER=5
EXIT_VERIFY=6
EXIT_HOST_KEY=7
EXIT_FOREIGN_LIBRARY=8
EXIT_LAYOUT=9
EXIT_INTERRUPTED=10
EXIT_ACCESS=11

work_dir=""
rsync_pid=""
log_to_volume=no

log() {
  line="$(date -u '+%Y-%m-%dT%H:%M:%SZ') plex-init[${phase:-?}]: $*"
  printf '%s\n' "$line" >&2
  if [ "$log_to_volume" = yes ]; then
    printf '%s\n' "$line" >>"$LOG_FILE" 2>/dev/null || true
  fi
}

die() {
  code=$1
  shift
  log "ERROR: $*"
  exit "$code"
}

on_exit() {
  status=$?
  trap - EXIT INT TERM
  if [ -n "$rsync_pid" ]; then
    kill "$rsync_pid" 2>/dev/null || true
    wait "$rsync_pid" 2>/dev/null || true
  fi
  [ -z "$work_dir" ] || rm -rf "$work_dir"
  exit "$status"
}

on_signal() {
  log "interrupted; the staging copy is kept and the next run resumes from it"
  exit "$EXIT_INTERRUPTED"
}

is_uint() {
  case $1 in '' | *[!0-9]*) return 1 ;; *) return 0 ;; esac
}

read_settings() {
  sync_host=${PLEX_SYNC_HOST:-}
  [ -n "$sync_host" ] || die "$EXIT_SETTINGS" "PLEX_SYNC_HOST is not set (the VM's address as the cluster reaches it)"
  case $sync_host in
    -* | *[!A-Za-z0-9.:_%-]*) die "$EXIT_SETTINGS" "PLEX_SYNC_HOST \"$sync_host\" is not a host name or IP address" ;;
  esac
  sync_port=${PLEX_SYNC_PORT:-22}
  if ! is_uint "$sync_port" || [ "$sync_port" -lt 1 ] || [ "$sync_port" -gt 65535 ]; then
    die "$EXIT_SETTINGS" "PLEX_SYNC_PORT \"$sync_port\" is not a TCP port"
  fi
  sync_user=${PLEX_SYNC_USER:-}
  case $sync_user in
    '' | -* | *[!A-Za-z0-9._-]*) die "$EXIT_SETTINGS" "PLEX_SYNC_USER \"$sync_user\" is not a user name" ;;
  esac
  key_file=${PLEX_SYNC_KEY_FILE:-/plex-migrate-sync/id_ed25519}
  [ -r "$key_file" ] || die "$EXIT_SETTINGS" "the migration key $key_file is missing or unreadable (the sync Secret is not mounted)"
  known_hosts=${PLEX_SYNC_KNOWN_HOSTS:-/plex-migrate-sync/known_hosts}
  [ -r "$known_hosts" ] || die "$EXIT_HOST_KEY" "no pinned host key: $known_hosts is missing (set vmHostKey)"
  grep -q "^$HOST_ALIAS [a-z0-9@.-]* [A-Za-z0-9+/=]*\$" "$known_hosts" ||
    die "$EXIT_HOST_KEY" "$known_hosts holds no pinned host key line \"$HOST_ALIAS <type> <base64>\" (set vmHostKey)"

  plex_uid=${PLEX_UID:-1000}
  plex_gid=${PLEX_GID:-1000}
  is_uint "$plex_uid" || die "$EXIT_SETTINGS" "PLEX_UID must be a numeric uid"
  is_uint "$plex_gid" || die "$EXIT_SETTINGS" "PLEX_GID must be a numeric gid"
  required_bytes=${PLEX_REQUIRED_BYTES:-0}
  is_uint "$required_bytes" || die "$EXIT_SETTINGS" "PLEX_REQUIRED_BYTES must be a byte count"
  required_inodes=${PLEX_REQUIRED_INODES:-0}
  is_uint "$required_inodes" || die "$EXIT_SETTINGS" "PLEX_REQUIRED_INODES must be a whole number of inodes"

  retries=${PLEX_SYNC_RETRIES:-5}
  retry_delay=${PLEX_SYNC_RETRY_DELAY:-2}
  io_timeout=${PLEX_SYNC_IO_TIMEOUT:-300}
  connect_timeout=${PLEX_SYNC_CONNECT_TIMEOUT:-20}
  for setting in "PLEX_SYNC_RETRIES=$retries" "PLEX_SYNC_RETRY_DELAY=$retry_delay" \
    "PLEX_SYNC_IO_TIMEOUT=$io_timeout" "PLEX_SYNC_CONNECT_TIMEOUT=$connect_timeout"; do
    is_uint "${setting#*=}" || die "$EXIT_SETTINGS" "${setting%%=*} must be a whole number"
  done
  max_rate=${PLEX_SYNC_MAX_RATE:-}
  case $max_rate in
    '') ;;
    [0-9]*) case $max_rate in *[!0-9kKmMgG]*) die "$EXIT_SETTINGS" "PLEX_SYNC_MAX_RATE must look like 50M (rsync --bwlimit)" ;; esac ;;
    *) die "$EXIT_SETTINGS" "PLEX_SYNC_MAX_RATE must look like 50M (rsync --bwlimit)" ;;
  esac

  excludes=${PLEX_SYNC_EXCLUDES:-}
  old_ifs=$IFS
  IFS='
'
  set -f
  for name in $excludes; do
    case $name in
      '' | */* | . | ..) die "$EXIT_SETTINGS" "PLEX_SYNC_EXCLUDES entry \"$name\" must be a top-level folder name" ;;
    esac
  done
  set +f
  IFS=$old_ifs

  databases=${PLEX_SYNC_DATABASES:-}
  if [ "$phase" = final ]; then
    [ -n "$databases" ] ||
      die "$EXIT_SETTINGS" "PLEX_SYNC_DATABASES is empty: the final phase needs the database checksums the VM's stop step measured"
    printf '%s\n' "$databases" | awk '
      NF == 0 { next }
      $1 !~ /^[0-9a-f]+$/ || length($1) != 64 || $2 !~ /^[0-9]+$/ || NF < 3 { bad = 1; exit }
      END { exit bad }' ||
      die "$EXIT_SETTINGS" "PLEX_SYNC_DATABASES must hold lines \"<sha256> <bytes> <path>\""
  fi
}

has() { command -v "$1" >/dev/null 2>&1; }

check_tools() {
  missing=""
  has rsync || missing="$missing rsync"
  has ssh || missing="$missing ssh(openssh-client)"
  for tool in sha256sum awk sed grep df du find mktemp chown chmod mv rm mkdir cat head tr wc date sync sleep; do
    has "$tool" || missing="$missing $tool"
  done
  [ -z "$missing" ] ||
    die "$EXIT_TOOLS" "missing tools in the init image:$missing. Use an image that has rsync, an OpenSSH client and a POSIX sh (config plexInitImage; the default is instrumentisto/rsync-ssh)"
  # --chown needs 3.1.0; --modify-window=-1 (nanosecond mtimes) needs 3.1.3.
  rsync_version=$(rsync --version 2>/dev/null | awk 'NR == 1 { print $3 }')
  case $rsync_version in
    [012].* | 3.0.* | 3.1.[012] | 3.1.[012][!0-9]* | '')
      die "$EXIT_TOOLS" "rsync $rsync_version in the init image is too old; 3.1.3 or newer is needed" ;;
  esac
}

# The key, host key and SSH options go through files in a scratch dir: rsync's -e value is split
# on spaces, and ssh refuses a key readable by others (Secret volumes may be group-readable).
prepare_ssh() {
  tmp_base=${PLEX_INIT_TMPDIR:-${TMPDIR:-/tmp}}
  case $tmp_base in *[!A-Za-z0-9/._-]*) die "$EXIT_SETTINGS" "PLEX_INIT_TMPDIR \"$tmp_base\" must be a plain path (no spaces)" ;; esac
  work_dir=$(mktemp -d "$tmp_base/plex-init.XXXXXX") ||
    die "$EXIT_SETTINGS" "cannot create a scratch directory in $tmp_base"
  chmod 700 "$work_dir"
  (umask 077 && cat "$key_file" >"$work_dir/id" && grep "^$HOST_ALIAS " "$known_hosts" >"$work_dir/known_hosts")
  cat >"$work_dir/ssh_config" <<EOF
Host $HOST_ALIAS
  HostName $sync_host
  Port $sync_port
  User $sync_user
  HostKeyAlias $HOST_ALIAS
  IdentityFile $work_dir/id
  IdentitiesOnly yes
  UserKnownHostsFile $work_dir/known_hosts
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking yes
  CheckHostIP no
  UpdateHostKeys no
  BatchMode yes
  ConnectTimeout $connect_timeout
  ServerAliveInterval 15
  ServerAliveCountMax 4
  ClearAllForwardings yes
  ForwardAgent no
  ForwardX11 no
  RequestTTY no
  LogLevel ERROR
EOF
}

# Options of every pass. -a with hard links, sparse files, nanosecond mtimes; owners mapped to
# Plex's ids on the receiving side (--chown is never sent to the VM, so the forced read-only
# server accepts it); deletions of what the source no longer has; temp files outside the tree.
set_rsync_options() {
  set -- --archive --hard-links --sparse --numeric-ids "--chown=$plex_uid:$plex_gid" \
    --modify-window=-1 --delete --delete-during "--temp-dir=$RSYNC_TMP" \
    "--timeout=$io_timeout" -e "ssh -F $work_dir/ssh_config"
  [ -z "$max_rate" ] || set -- "$@" "--bwlimit=$max_rate"
  old_ifs=$IFS
  IFS='
'
  set -f
  for name in $excludes; do set -- "$@" "--exclude=/$name"; done
  set +f
  IFS=$old_ifs
  for option in "$@"; do printf '%s\n' "$option"; done >"$work_dir/rsync.options"
}

# Runs rsync once with the common options plus "$@"; stdout to $work_dir/rsync.out, stderr to
# $work_dir/rsync.err; sets rsync_rc. In the background, so a signal stops it at once.
run_rsync_once() {
  set -- "$@" "$HOST_ALIAS:./" "$DATA_STAGE/"
  old_ifs=$IFS
  IFS='
'
  set -f
  # shellcheck disable=SC2046 # one option per line, written by set_rsync_options
  set -- $(cat "$work_dir/rsync.options") "$@"
  set +f
  IFS=$old_ifs
  rsync "$@" >"$work_dir/rsync.out" 2>"$work_dir/rsync.err" &
  rsync_pid=$!
  rsync_rc=0
  wait "$rsync_pid" || rsync_rc=$?
  rsync_pid=""
}

rsync_errors() {
  grep -v '^$' "$work_dir/rsync.err" | head -n 5 | tr '\n' ' '
}

# Stops with a clear error for the failures another attempt cannot fix.
classify_failure() {
  err=$work_dir/rsync.err
  if grep -q -e 'REMOTE HOST IDENTIFICATION HAS CHANGED' -e 'Host key verification failed' \
    -e 'No [A-Z0-9-]* host key is known' "$err"; then
    die "$EXIT_HOST_KEY" "the VM's SSH host key is not the pinned one (vmHostKey), so the connection was refused. If the VM's key changed legitimately (reinstall), pin the new one: pulumi config set vmHostKey \"\$(ssh-keyscan -t ed25519 <vmHost> | cut -d' ' -f2-)\""
  fi
  if grep -q -e 'No space left on device' -e 'Disk quota exceeded' "$err"; then
    # ENOSPC is also what a filesystem out of inodes returns: say which one ran out (rsync
    # removes its temp file as it stops, so a few may be free again).
    # shellcheck disable=SC2046 # two numbers
    set -- $(volume_inodes)
    if is_uint "${1:-}" && is_uint "${2:-}" && [ "$1" -gt 0 ] && [ "$(($2 * 100))" -lt "$1" ]; then
      die "$EXIT_SPACE" "the config volume ran out of inodes (only $2 of $1 free, while $(df -Pk "$CONFIG_DIR" | awk 'NR == 2 { print int($4 / 1024) }') MiB are still free): the library has more files than the filesystem can hold. Give it a larger volume (config plexConfigSize: ext4 has one inode per 16 KiB) or a StorageClass whose filesystem has more inodes, and run again: the copy resumes"
    fi
    die "$EXIT_SPACE" "the config volume is full ($(df -Pk "$CONFIG_DIR" | awk 'NR == 2 { print int($4 / 1024) }') MiB left). Give it more room (config plexConfigSize) and run again: the copy resumes"
  fi
  if grep -q -e 'Permission denied (publickey' -e 'Too many authentication failures' "$err"; then
    die "$EXIT_ACCESS" "the VM refused the migration key (not authorized, or revoked): run pulumi up again so the authorize-sync step authorizes it"
  fi
  if grep -q -e 'rrsync' -e 'has been disabled on this server' -e 'read-only server not allowed' "$err"; then
    die "$EXIT_ACCESS" "the VM's read-only rsync server refused the request: $(rsync_errors)"
  fi
  case $rsync_rc in
    1 | 2 | 4 | 6 | 13 | 14 | 21 | 22 | 25)
      die "$EXIT_TRANSFER" "rsync failed (exit $rsync_rc): $(rsync_errors)" ;;
  esac
}

# One complete transfer, retried after broken connections. rsync resumes from what the staging
# copy holds, so a retry moves only what is still missing.
transfer() {
  attempt=0
  delay=$retry_delay
  while :; do
    attempt=$((attempt + 1))
    log "transfer: attempt $attempt"
    run_rsync_once --stats
    if [ "$rsync_rc" -eq 0 ]; then
      log "transfer: done ($(awk -F': ' '/^Number of deleted files|^Total transferred file size/ { sub(/ \(.*/, "", $2); printf "%s%s: %s", sep, $1, $2; sep = "; " }' "$work_dir/rsync.out"))"
      return 0
    fi
    if [ "$rsync_rc" -eq 24 ] && [ "$phase" = warm ]; then
      # Plex still runs during the warm copy: files it removed meanwhile are expected.
      log "transfer: done; some files vanished while copying (Plex is running), the final phase takes care of them"
      return 0
    fi
    classify_failure
    if [ "$attempt" -gt "$retries" ]; then
      die "$EXIT_TRANSFER" "the transfer failed $attempt times (last rsync exit $rsync_rc: $(rsync_errors)); run again to resume"
    fi
    log "transfer: attempt $attempt broke off (rsync exit $rsync_rc: $(rsync_errors)); retrying in ${delay}s"
    sleep "$delay"
    delay=$((delay * 2))
    [ "$delay" -le 30 ] || delay=30
  done
}

check_free_space() {
  check_free_bytes
  check_free_inodes
}

check_free_bytes() {
  [ "$required_bytes" -gt 0 ] || return 0
  available_kib=$(df -Pk "$CONFIG_DIR" | awk 'NR == 2 { print $4 }')
  staged_kib=$(du -sk "$STAGING" 2>/dev/null | awk '{ print $1 }')
  is_uint "$available_kib" || die "$EXIT_SPACE" "cannot read the free space of $CONFIG_DIR"
  # What lib/plex/sizing.ts (requiredConfigBytes) asks for, less what an earlier run copied.
  needed_kib=$(((required_bytes + 1023) / 1024 - ${staged_kib:-0}))
  log "space: the library needs about $((needed_kib / 1024)) MiB more, $((available_kib / 1024)) MiB free on $CONFIG_DIR"
  if [ "$available_kib" -lt "$needed_kib" ]; then
    die "$EXIT_SPACE" "not enough free space on $CONFIG_DIR: need $((needed_kib / 1024)) MiB more, have $((available_kib / 1024)) MiB. Give the config volume more room (config plexConfigSize) and run again"
  fi
}

# "<total> <free>" inodes of the config volume (df -Pi columns: Inodes, IUsed, IFree). busybox df
# has -i with FEATURE_DF_FANCY (coreutils/df.c), which Alpine's busybox enables
# (alpinelinux/aports main/busybox/busyboxconfig: CONFIG_FEATURE_DF_FANCY=y).
volume_inodes() {
  df -Pi "$CONFIG_DIR" 2>/dev/null | awk 'NR == 2 { print $2, $4 }'
}

check_free_inodes() {
  [ "$required_inodes" -gt 0 ] || return 0
  # shellcheck disable=SC2046 # two numbers
  set -- $(volume_inodes)
  total_inodes=${1:-}
  free_inodes=${2:-}
  if ! is_uint "$total_inodes" || ! is_uint "$free_inodes"; then
    die "$EXIT_SPACE" "cannot read the free inodes of $CONFIG_DIR (df -Pi): use an init image whose df has -i (config plexInitImage; the default instrumentisto/rsync-ssh does)"
  fi
  if [ "$total_inodes" -eq 0 ]; then
    # statfs reports no inode limit on filesystems that allocate inodes as needed (btrfs, tmpfs
    # without nr_inodes: linux mm/shmem.c shmem_statfs leaves f_files 0 "like simple_statfs").
    log "inodes: $CONFIG_DIR reports no inode limit (its filesystem allocates them as needed); not checked"
    return 0
  fi
  # What an earlier run already copied uses inodes it counted in: only the rest is needed.
  staged_inodes=$(find "$STAGING" 2>/dev/null | wc -l | tr -d ' ')
  needed_inodes=$((required_inodes - ${staged_inodes:-0}))
  log "inodes: the library needs about $needed_inodes more, $free_inodes free on $CONFIG_DIR"
  if [ "$free_inodes" -lt "$needed_inodes" ]; then
    die "$EXIT_SPACE" "not enough free inodes on $CONFIG_DIR: the library needs $needed_inodes more files, the filesystem has room for $free_inodes (of $total_inodes). Give the config volume more room (config plexConfigSize: ext4 has one inode per 16 KiB), or a StorageClass whose filesystem has more inodes, and run again"
  fi
}

# A dry run that must find nothing: no file to send, none to delete, no attribute to fix.
verify_no_changes() {
  attempt=0
  while :; do
    attempt=$((attempt + 1))
    run_rsync_once --dry-run --itemize-changes
    [ "$rsync_rc" -eq 0 ] && break
    classify_failure
    [ "$attempt" -le "$retries" ] ||
      die "$EXIT_TRANSFER" "the verification pass failed (rsync exit $rsync_rc: $(rsync_errors)); run again"
    log "verify: attempt $attempt broke off (rsync exit $rsync_rc); retrying"
    sleep "$retry_delay"
  done
  changes=$(grep -c . "$work_dir/rsync.out" || true)
  if [ "$changes" -gt 0 ]; then
    die "$EXIT_VERIFY" "the copy still differs from the VM in $changes entries right after the transfer, so the source is still changing (is Plex really stopped on the VM?): $(head -n 5 "$work_dir/rsync.out" | tr '\n' ';')"
  fi
  log "verify: a second pass finds nothing to change"
}

verify_databases() {
  printf '%s\n' "$databases" >"$work_dir/databases"
  count=0
  while read -r want_sha want_bytes relative; do
    [ -n "$want_sha" ] || continue
    count=$((count + 1))
    file=$DATA_STAGE/$relative
    [ -f "$file" ] || die "$EXIT_VERIFY" "the database \"$relative\" the VM measured after the stop is not in the copy"
    got_bytes=$(wc -c <"$file" | tr -d ' ')
    [ "$got_bytes" = "$want_bytes" ] ||
      die "$EXIT_VERIFY" "\"$relative\" has $got_bytes bytes in the copy, $want_bytes on the VM after the stop"
    got_sha=$(sha256sum "$file" | awk '{ print $1 }')
    [ "$got_sha" = "$want_sha" ] ||
      die "$EXIT_VERIFY" "sha256 of \"$relative\" in the copy is $got_sha, on the VM after the stop $want_sha"
  done <"$work_dir/databases"
  log "verify: the sha256 of $count Plex databases match the VM's after the stop"
}

check_layout() {
  [ -f "$DATA_STAGE/Preferences.xml" ] ||
    die "$EXIT_LAYOUT" "the copied directory has no Preferences.xml: plexDataDir on the VM is not a Plex data directory"
}

sync_volume() {
  sync -f "$1" 2>/dev/null || sync
}

write_marker() {
  {
    printf 'imported_at=%s\n' "$(date -u '+%Y-%m-%dT%H:%M:%SZ')"
    printf 'method=rsync\n'
    printf 'owner=%s:%s\n' "$1" "$2"
    printf 'generation=%s\n' "$3"
  } >"$MARKER.tmp"
  mv -f "$MARKER.tmp" "$MARKER"
}

run_warm() {
  check_free_space
  transfer
  date -u '+%Y-%m-%dT%H:%M:%SZ' >"$WARM_DONE"
  sync_volume "$STAGING"
  log "warm copy complete; the final phase transfers only what changes until Plex stops"
}

run_final() {
  # After a warm copy only the changes move: walking the staged tree to count it would add to the
  # downtime for nothing, so the volume is checked only when everything is still to be copied.
  if [ ! -f "$WARM_DONE" ]; then
    log "no warm copy on the volume: the final phase copies everything (longer downtime)"
    check_free_space
  fi
  transfer
  verify_no_changes
  verify_databases
  check_layout
  # The two parents of the data directory are ours, not the VM's.
  chown "$plex_uid:$plex_gid" "$STAGING/Library" "$STAGING/Library/Application Support" "$CONFIG_DIR"
  sync_volume "$STAGING"
  printf 'owner=%s:%s\ngeneration=%s\n' "$plex_uid" "$plex_gid" "$generation" >"$RECEIPT"
  if [ -n "$previous_generation" ] && { [ -e "$LIBRARY" ] || [ -L "$LIBRARY" ]; }; then
    replaced=$STATE_DIR/replaced-generation-$previous_generation
    [ ! -e "$replaced" ] || replaced=$replaced.$(date -u '+%Y%m%dT%H%M%SZ')
    mv "$LIBRARY" "$replaced"
    log "the library of transfer generation $previous_generation is kept in $replaced; delete it once this copy serves well"
  fi
  mv "$STAGING/Library" "$LIBRARY"
  write_marker "$plex_uid" "$plex_gid" "$generation"
  rm -rf "$STAGING" "$RSYNC_TMP" "$RECEIPT" "$WARM_DONE"
  sync_volume "$CONFIG_DIR"
  log "done: $LIBRARY verified against the stopped VM and owned by $plex_uid:$plex_gid"
}

# The generation a marker or receipt records; 1 for one written before generations existed.
recorded_generation() {
  recorded=$(sed -n 's/^generation=//p' "$1")
  if is_uint "$recorded" && [ "$recorded" -ge 1 ]; then printf '%s\n' "$recorded"; else echo 1; fi
}

# A run that stopped between the rename and the marker left its receipt: finish it. Otherwise a
# library in place is an older generation's (the marker says so) or not ours.
resume_after_rename() {
  if [ -f "$RECEIPT" ] && [ ! -e "$STAGING/Library" ]; then
    owner=$(sed -n 's/^owner=//p' "$RECEIPT")
    log "the library was moved into place by an earlier run that stopped before the marker; completing it"
    write_marker "${owner%%:*}" "${owner#*:}" "$(recorded_generation "$RECEIPT")"
    rm -rf "$STAGING" "$RSYNC_TMP" "$RECEIPT" "$WARM_DONE"
    exit 0
  fi
  [ -z "$previous_generation" ] || return 0
  die "$EXIT_FOREIGN_LIBRARY" "$LIBRARY exists but was not put there by plex-init (no $MARKER); it is left untouched. If it is the complete library, create the marker (touch $MARKER); to copy the VM's library instead, move it away and run again"
}

main() {
  trap on_exit EXIT
  trap on_signal INT TERM
  phase=${PLEX_SYNC_PHASE:-}
  case $phase in
    warm | final) ;;
    *) die "$EXIT_SETTINGS" "PLEX_SYNC_PHASE must be warm or final, got \"$phase\"" ;;
  esac

  generation=${PLEX_SYNC_GENERATION:-1}
  if ! is_uint "$generation" || [ "$generation" -lt 1 ]; then
    die "$EXIT_SETTINGS" "PLEX_SYNC_GENERATION \"$generation\" must be a whole number from 1 (the stack's transferGeneration)"
  fi
  previous_generation=""
  if [ -f "$MARKER" ]; then
    if [ "$(recorded_generation "$MARKER")" -ge "$generation" ]; then
      log "already imported ($(tr '\n' ' ' <"$MARKER")); nothing to do"
      exit 0
    fi
    previous_generation=$(recorded_generation "$MARKER")
    log "the library in place is from transfer generation $previous_generation; generation $generation copies the VM again (the current library stays in use until the new copy is verified)"
  fi
  [ -d "$CONFIG_DIR" ] || die "$EXIT_SETTINGS" "config directory $CONFIG_DIR does not exist (set PLEX_CONFIG_DIR)"
  mkdir -p "$STATE_DIR" || die "$EXIT_SETTINGS" "cannot create $STATE_DIR"
  chmod 700 "$STATE_DIR"
  log_to_volume=yes
  if [ -e "$LIBRARY" ] || [ -L "$LIBRARY" ]; then resume_after_rename; fi

  read_settings
  check_tools
  prepare_ssh
  mkdir -p "$DATA_STAGE" "$RSYNC_TMP"
  rm -rf "${RSYNC_TMP:?}"/* "$RSYNC_TMP"/.[!.]* 2>/dev/null || true
  set_rsync_options
  log "syncing $sync_user@$sync_host:$sync_port (read-only) into $DATA_STAGE, owner $plex_uid:$plex_gid"
  case $phase in
    warm) run_warm ;;
    final) run_final ;;
  esac
}

main "$@"
