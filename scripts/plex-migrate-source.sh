#!/usr/bin/env bash
# plex-migrate-source.sh: the VM side of plex-migrate (see README, "Source VM").
#
#   plex-migrate-source.sh preflight|authorize-sync|stop|revoke-sync|rollback
#   plex-migrate-source.sh rollback --force    (the same as PLEX_MIGRATE_ROLLBACK_FORCE=1)
#
# Each step is idempotent, prints one JSON object on stdout when it succeeds (progress goes to
# stderr) and appends timestamped lines to the migration log. The Plex data directory is only
# ever read. Configuration comes from the environment (defaults in brackets):
#
#   PLEX_MIGRATE_WORK_DIR              work dir for snapshot, state, log [/var/lib/plex-migrate]; it and
#                                      every parent must be a real directory owned by root (or by the
#                                      user running the script) that no one else can write to
#   PLEX_MIGRATE_LOG                   migration log [$PLEX_MIGRATE_WORK_DIR/migration.log]
#   PLEX_MIGRATE_DATA_DIR              Plex data dir, the folder holding Preferences.xml
#                                      [/var/lib/plexmediaserver/Library/Application Support/Plex Media Server]
#   PLEX_MIGRATE_PLEX_SERVICE          systemd unit of Plex [plexmediaserver]
#   PLEX_MIGRATE_PLEX_PACKAGE          dpkg package of Plex [plexmediaserver]
#   PLEX_MIGRATE_PLEX_SQLITE           Plex's SQLite [the deb's /usr/lib/plexmediaserver/Plex SQLite,
#                                      else the snap's /snap/plexmediaserver/current/Plex SQLite, else
#                                      "Plex SQLite" on PATH]; without it stock sqlite3/python3 check what
#                                      they can and a database using Plex's collations is "not checked"
#   PLEX_MIGRATE_TAUTULLI_SERVICE      systemd unit of Tautulli, "" for none [tautulli]
#   PLEX_MIGRATE_TAUTULLI_DB           tautulli.db, "" for none [/opt/Tautulli/tautulli.db]
#   PLEX_MIGRATE_SYNC_PUBLIC_KEY       the migration's public key ("ssh-ed25519 AAAA..."), which
#                                      authorize-sync lets run a read-only rsync server (rrsync -ro)
#                                      confined to the data dir, and revoke-sync removes [""]
#   PLEX_MIGRATE_SYNC_ALLOWED_CIDRS    comma-separated networks the key may connect from (from=);
#                                      "" allows any [""]
#   PLEX_MIGRATE_SYNC_USER             account whose authorized_keys gets the key [$SUDO_USER, else
#                                      the user running the script]
#   PLEX_MIGRATE_SYNC_AUTHORIZED_KEYS  that file [~user/.ssh/authorized_keys]
#   PLEX_MIGRATE_SYNC_RRSYNC_SEARCH    colon-separated places to look for rrsync [/usr/bin/rrsync, then
#                                      /usr/share/doc/rsync/scripts/rrsync(.gz) as on Ubuntu 20.04]
#   PLEX_MIGRATE_STOP_TIMEOUT_SECONDS  how long stop waits for processes to let go [180]
#   PLEX_MIGRATE_ROLLBACK_FORCE        1: roll back even though the migrated Plex may be running
#                                      (stop the cluster's Plex first) [0]; or `rollback --force`
#   PLEX_MIGRATE_PROGRESS_SECONDS      seconds between progress lines of long operations [10]
#   PLEX_MIGRATE_REHEARSAL             1: no systemctl/dpkg-query (a machine without Plex); the
#                                      version comes from PLEX_MIGRATE_PLEX_VERSION or Logs/ [0]
#   PLEX_MIGRATE_PLEX_VERSION          Plex version to report instead of asking dpkg-query [""]
#
# Exit codes: 0 done; 1 failed (see stderr); 2 bad configuration or usage; 3 refused: a check
# found something that would make the migration fail (nothing was changed).
set -euo pipefail
shopt -s inherit_errexit
# `>` never replaces an existing file: every file the script writes is created fresh.
set -o noclobber
umask 077
export LC_ALL=C

readonly EXIT_FAILED=1 EXIT_USAGE=2 EXIT_REFUSED=3
readonly LIBRARY_DB="Plug-in Support/Databases/com.plexapp.plugins.library.db"
readonly BLOBS_DB="Plug-in Support/Databases/com.plexapp.plugins.library.blobs.db"

WORK_DIR=${PLEX_MIGRATE_WORK_DIR:-/var/lib/plex-migrate}
LOG_FILE=${PLEX_MIGRATE_LOG:-$WORK_DIR/migration.log}
DATA_DIR=${PLEX_MIGRATE_DATA_DIR:-/var/lib/plexmediaserver/Library/Application Support/Plex Media Server}
PLEX_SERVICE=${PLEX_MIGRATE_PLEX_SERVICE-plexmediaserver}
PLEX_PACKAGE=${PLEX_MIGRATE_PLEX_PACKAGE:-plexmediaserver}
PLEX_SQLITE=${PLEX_MIGRATE_PLEX_SQLITE:-}
TAUTULLI_SERVICE=${PLEX_MIGRATE_TAUTULLI_SERVICE-tautulli}
TAUTULLI_DB=${PLEX_MIGRATE_TAUTULLI_DB-/opt/Tautulli/tautulli.db}
STOP_TIMEOUT=${PLEX_MIGRATE_STOP_TIMEOUT_SECONDS:-180}
ROLLBACK_FORCE=${PLEX_MIGRATE_ROLLBACK_FORCE:-0}
PROGRESS_SECONDS=${PLEX_MIGRATE_PROGRESS_SECONDS:-10}
REHEARSAL=${PLEX_MIGRATE_REHEARSAL:-0}
PLEX_VERSION_OVERRIDE=${PLEX_MIGRATE_PLEX_VERSION:-}

STATE_DIR="$WORK_DIR/state"
CHECK_DIR="$WORK_DIR/check"
SNAPSHOT_DIR="$WORK_DIR/snapshot"
STEP="plex-migrate"
LOG_READY=0
NOTES=()

# --- logging and errors ---------------------------------------------------------------------

log() {
  local line
  line="[$(date '+%Y-%m-%d %H:%M:%S %z')] [$STEP] $*"
  printf '%s\n' "$line" >&2
  if [ "$LOG_READY" = 1 ]; then printf '%s\n' "$line" >>"$LOG_FILE" || true; fi
}
note() {
  NOTES+=("$*")
  log "note: $*"
}
die() {
  log "error: $*"
  exit "$EXIT_FAILED"
}
refuse() {
  log "refused: $*"
  exit "$EXIT_REFUSED"
}
usage_error() {
  log "configuration error: $*"
  exit "$EXIT_USAGE"
}

# --- JSON -----------------------------------------------------------------------------------

json_str() {
  local s=$1 out="" ch i
  s=${s//\\/\\\\}
  s=${s//\"/\\\"}
  s=${s//$'\n'/\\n}
  s=${s//$'\r'/\\r}
  s=${s//$'\t'/\\t}
  if [[ $s =~ [[:cntrl:]] ]]; then
    for ((i = 0; i < ${#s}; i++)); do
      ch=${s:i:1}
      if [[ $ch =~ [[:cntrl:]] ]]; then out+=$(printf '\\u%04x' "'$ch"); else out+=$ch; fi
    done
    s=$out
  fi
  printf '"%s"' "$s"
}
json_list() {
  local first=1 item
  printf '['
  for item in "$@"; do
    if [ "$first" = 1 ]; then first=0; else printf ','; fi
    json_str "$item"
  done
  printf ']'
}
json_bool() { if [ "$1" = 1 ] || [ "$1" = true ]; then printf true; else printf false; fi; }
json_notes() { json_list ${NOTES[@]+"${NOTES[@]}"}; }
json_raw_list() {
  local IFS=,
  printf '[%s]' "$*"
}
json_int() { if [[ $1 =~ ^-?[0-9]+$ ]]; then printf '%s' "$1"; else printf null; fi; }
# json_obj KEY JSON KEY JSON ...: one object from already-encoded values, keys in the order given.
# A step's summary is `json_obj step '"<step>"' ...`; lib/source-vm/protocol.ts lists its keys.
json_obj() {
  local first=1
  printf '{'
  while [ $# -ge 2 ]; do
    if [ "$first" = 1 ]; then first=0; else printf ','; fi
    printf '"%s":%s' "$1" "$2"
    shift 2
  done
  printf '}'
}
now_iso() { date -u '+%Y-%m-%dT%H:%M:%SZ'; }

# --- configuration checks -------------------------------------------------------------------

is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }

check_config() {
  case "$WORK_DIR" in /*) ;; *) usage_error "PLEX_MIGRATE_WORK_DIR must be an absolute path, got '$WORK_DIR'" ;; esac
  case "$DATA_DIR" in /*) ;; *) usage_error "PLEX_MIGRATE_DATA_DIR must be an absolute path, got '$DATA_DIR'" ;; esac
  local work data
  work=$(realpath -m -- "$WORK_DIR")
  data=$(realpath -m -- "$DATA_DIR")
  if [ "$work" = "$data" ] || [[ $work == "$data"/* ]]; then
    usage_error "the work dir $WORK_DIR is inside the Plex data dir; choose another (the source is never written to)"
  fi
  is_uint "$STOP_TIMEOUT" || usage_error "PLEX_MIGRATE_STOP_TIMEOUT_SECONDS must be a number, got '$STOP_TIMEOUT'"
  case "$REHEARSAL" in 0 | 1) ;; *) usage_error "PLEX_MIGRATE_REHEARSAL must be 0 or 1, got '$REHEARSAL'" ;; esac
  if [ -n "$PLEX_SERVICE" ] && ! [[ $PLEX_SERVICE =~ ^[A-Za-z0-9:_.@-]+$ ]]; then
    usage_error "PLEX_MIGRATE_PLEX_SERVICE is not a systemd unit name: '$PLEX_SERVICE'"
  fi
  if [ -n "$TAUTULLI_SERVICE" ] && ! [[ $TAUTULLI_SERVICE =~ ^[A-Za-z0-9:_.@-]+$ ]]; then
    usage_error "PLEX_MIGRATE_TAUTULLI_SERVICE is not a systemd unit name: '$TAUTULLI_SERVICE'"
  fi
}

# --- the work dir ---------------------------------------------------------------------------

# Refuses unless every component of the absolute path $1 is a real directory (not a symlink) owned
# by root or by the user running this script. The directory itself must not be writable by group
# or others; a parent may be, only with the sticky bit (like /tmp: others cannot rename or remove
# what they do not own there). Missing components are created 0700 by this script; an existing
# directory is never chmod-ed. $2 names the setting in messages.
ensure_private_dir() {
  local target=$1 setting=$2 current="" part parts=() owner mode last=0 i
  local fix="choose a path whose every directory is owned by root and writable only by root (the default is /var/lib/plex-migrate)"
  IFS=/ read -r -a parts <<<"${target#/}"
  for ((i = -1; i < ${#parts[@]}; i++)); do
    if [ "$i" -ge 0 ]; then
      part=${parts[i]}
      if [ -z "$part" ] || [ "$part" = . ]; then continue; fi
      [ "$part" != .. ] || usage_error "$setting ($target) must not contain '..'"
      current="$current/$part"
    fi
    [ "$i" -lt $((${#parts[@]} - 1)) ] || last=1
    if [ -L "${current:-/}" ]; then
      refuse "$setting: ${current} is a symlink (to $(readlink -- "$current")); $fix, or use the real path $(realpath -m -- "$target")"
    fi
    if [ ! -e "${current:-/}" ]; then
      mkdir -m 0700 -- "$current" || die "cannot create $current for $setting"
      continue
    fi
    [ -d "${current:-/}" ] || refuse "$setting: ${current} is not a directory; $fix"
    read -r owner mode < <(stat -c '%u %a' -- "${current:-/}")
    if [ "$owner" != 0 ] && [ "$owner" != "$EUID" ]; then
      refuse "$setting: ${current:-/} is owned by uid $owner, not root: another user could swap what this script reads and writes there; $fix"
    fi
    mode=$((8#$mode))
    if [ "$last" = 1 ] && [ $((mode & 8#022)) != 0 ]; then
      refuse "$setting: ${current} is writable by group or others (mode $(printf '%o' "$mode")); $fix"
    elif [ $((mode & 8#022)) != 0 ] && [ $((mode & 8#1000)) = 0 ]; then
      refuse "$setting: ${current:-/} is writable by group or others without the sticky bit (mode $(printf '%o' "$mode")); $fix"
    fi
  done
}

ensure_work_dir() {
  ensure_private_dir "$WORK_DIR" "the work dir (vmWorkDir, PLEX_MIGRATE_WORK_DIR)"
  ensure_private_dir "$(dirname -- "$LOG_FILE")" "the log's directory (PLEX_MIGRATE_LOG)"
  if [ -L "$LOG_FILE" ] || { [ -e "$LOG_FILE" ] && [ ! -f "$LOG_FILE" ]; }; then
    refuse "the migration log $LOG_FILE is not a regular file; remove it"
  fi
  if [ ! -e "$LOG_FILE" ]; then : >"$LOG_FILE" || die "cannot create the migration log $LOG_FILE"; fi
  LOG_READY=1
}

# A fresh private directory inside the work dir (the work dir is checked, so nobody else can have
# put anything in it).
fresh_dir() {
  rm -rf -- "$1"
  mkdir -m 0700 -- "$1"
}

# --- failure cleanup -------------------------------------------------------------------------

# Files and directories that only exist while a step runs (database copies, partial snapshots):
# removed whatever way the step ends, so a dropped SSH connection leaves no copy behind.
SCRATCH=()
scratch() { SCRATCH+=("$@"); }
on_exit() {
  local rc=$? item
  trap - EXIT HUP INT TERM PIPE
  for item in ${SCRATCH[@]+"${SCRATCH[@]}"}; do rm -rf -- "$item" 2>/dev/null || true; done
  if [ "$rc" -ge 128 ] && [ "$LOG_READY" = 1 ]; then
    printf '%s\n' "[$(date '+%Y-%m-%d %H:%M:%S %z')] [$STEP] interrupted (signal $((rc - 128))); partial files removed" >>"$LOG_FILE" 2>/dev/null || true
  fi
  exit "$rc"
}
trap on_exit EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 141' PIPE

# --- progress --------------------------------------------------------------------------------

human_bytes() {
  local b=$1
  if [ "$b" -ge $((1 << 30)) ]; then printf '%d.%02d GiB' $((b >> 30)) $(((b % (1 << 30)) * 100 >> 30))
  elif [ "$b" -ge $((1 << 20)) ]; then printf '%d.%02d MiB' $((b >> 20)) $(((b % (1 << 20)) * 100 >> 20))
  else printf '%d bytes' "$b"; fi
}

# rate BYTES SECONDS: "12.34 MiB/s"
rate() { human_bytes $(($1 / ($2 > 0 ? $2 : 1))) | sed 's,$,/s,'; }

# with_progress LABEL TOTAL WATCH CMD...: runs CMD, logging every PROGRESS_SECONDS how far it got
# (bytes of the file WATCH, or with WATCH "fd:N" the read offset of CMD's descriptor N) and the
# rate, then one line with the total and the time taken. CMD's stdout is passed through.
with_progress() {
  local label=$1 total=$2 watch=$3 pid done_bytes=0 started=$SECONDS next rc=0
  shift 3
  "$@" 0<&0 &
  pid=$!
  next=$((SECONDS + PROGRESS_SECONDS))
  while kill -0 "$pid" 2>/dev/null; do
    if [ "$SECONDS" -ge "$next" ]; then
      case "$watch" in
        fd:*) done_bytes=$(awk '/^pos:/ {print $2}' "/proc/$pid/fdinfo/${watch#fd:}" 2>/dev/null || echo 0) ;;
        "") done_bytes="" ;;
        *) done_bytes=$(stat -c %s -- "$watch" 2>/dev/null || echo 0) ;;
      esac
      if [ -z "$done_bytes" ] && [ "$total" = 0 ]; then
        log "$label: running, $((SECONDS - started))s"
      elif [ -z "$done_bytes" ]; then
        log "$label: running, $(human_bytes "$total") to go through, $((SECONDS - started))s"
      else
        log "$label: $(human_bytes "$done_bytes") of $(human_bytes "$total"), $(rate "$done_bytes" $((SECONDS - started))), $((SECONDS - started))s"
      fi
      next=$((SECONDS + PROGRESS_SECONDS))
    fi
    sleep 0.2
  done
  wait "$pid" || rc=$?
  [ "$rc" = 0 ] || return "$rc"
  if [ "$total" = 0 ]; then
    log "$label: done in $((SECONDS - started))s"
  else
    log "$label: done, $(human_bytes "$total") in $((SECONDS - started))s ($(rate "$total" $((SECONDS - started))))"
  fi
}

# sha256 of a file, with progress lines for large ones.
sha256_of() {
  local file=$1 size
  size=$(stat -c %s -- "$file")
  local sum label
  label="sha256 $(basename -- "$file")"
  sum=$(with_progress "$label" "$size" fd:0 sha256sum <"$file") ||
    die "cannot read $file to take its sha256 (the disk may be failing); fix the disk and run the step again"
  printf '%s' "${sum%% *}"
}

# --- Plex facts -----------------------------------------------------------------------------

require_data_dir() {
  if [ ! -d "$DATA_DIR" ]; then
    local hint=""
    if [ "$REHEARSAL" = 0 ] && snap_plex_version >/dev/null 2>&1; then
      hint=" (Plex is installed as a snap here: its data is in $SNAP_DATA_DIR and its unit is $SNAP_UNIT)"
    fi
    refuse "the Plex data dir $DATA_DIR does not exist$hint; set plexDataDir (PLEX_MIGRATE_DATA_DIR) to the folder holding Preferences.xml"
  fi
  [ -f "$DATA_DIR/Preferences.xml" ] ||
    refuse "$DATA_DIR has no Preferences.xml, so it is not a Plex data dir; set plexDataDir (PLEX_MIGRATE_DATA_DIR) to the folder holding Preferences.xml"
  [ -f "$DATA_DIR/$LIBRARY_DB" ] ||
    refuse "no Plex library database at $DATA_DIR/$LIBRARY_DB; is plexDataDir the right folder?"
}

PLEX_VERSION=""
PLEX_VERSION_SOURCE=""
INSTALL=""
readonly SNAP_UNIT="snap.plexmediaserver.plexmediaserver"
readonly SNAP_DATA_DIR="/var/snap/plexmediaserver/common/Library/Application Support/Plex Media Server"

# The snap's version ("snap list plexmediaserver" prints a header line, then "name version …").
snap_plex_version() {
  command -v snap >/dev/null 2>&1 || return 1
  snap list plexmediaserver 2>/dev/null | awk '$1 == "plexmediaserver" { print $2; found = 1 } END { exit !found }'
}

# "name image" of a running container whose image is a Plex server image.
docker_plex_container() {
  command -v docker >/dev/null 2>&1 || return 1
  docker ps --format '{{.Names}} {{.Image}}' 2>/dev/null |
    awk '$2 ~ /(^|\/)(pms-docker|plex)(:|$)/ { print; found = 1; exit } END { exit !found }'
}

# How Plex is installed and which version runs. The deb: dpkg-query. The snap: `snap list`, its
# unit snap.plexmediaserver.plexmediaserver and data under /var/snap (as PlexDBRepair's
# DBRepair.sh finds it). A container (Docker): the version from its log, and only when
# plexService names a systemd unit that runs the container, since stop and rollback go through
# systemd. Sets INSTALL (deb|snap|docker|rehearsal|given), PLEX_VERSION, PLEX_VERSION_SOURCE.
detect_plex_version() {
  local status="" container
  if [ -n "$PLEX_VERSION_OVERRIDE" ]; then
    INSTALL=given
    PLEX_VERSION=$PLEX_VERSION_OVERRIDE
    PLEX_VERSION_SOURCE="PLEX_MIGRATE_PLEX_VERSION"
  elif [ "$REHEARSAL" = 1 ]; then
    INSTALL=rehearsal
    version_from_logs
  else
    if command -v dpkg-query >/dev/null 2>&1; then
      status=$(dpkg-query -W -f='${db:Status-Status} ${Version}' -- "$PLEX_PACKAGE" 2>/dev/null) || status=""
    fi
    if [ "${status%% *}" = "installed" ] && [ -n "${status#* }" ]; then
      INSTALL=deb
      PLEX_VERSION=${status#* }
      PLEX_VERSION_SOURCE="dpkg-query"
    elif PLEX_VERSION=$(snap_plex_version); then
      INSTALL=snap
      PLEX_VERSION_SOURCE="snap list"
      if [ "$PLEX_SERVICE" != "$SNAP_UNIT" ] && ! unit_found "$PLEX_SERVICE"; then
        refuse "Plex is installed as a snap: set plexService to $SNAP_UNIT (and plexDataDir to $SNAP_DATA_DIR)"
      fi
    elif container=$(docker_plex_container); then
      INSTALL=docker
      if ! unit_found "$PLEX_SERVICE"; then
        refuse "Plex runs in the container ${container% *} (image ${container#* }), and plex-migrate stops and restarts Plex through systemd: run the container from a systemd unit (ExecStart=docker start -a ${container% *}, ExecStop=docker stop ${container% *}) and set plexService to it; set plexDataDir to the host folder mounted at /config plus /Library/Application Support/Plex Media Server"
      fi
      version_from_logs
    else
      refuse "Plex Media Server is not installed: dpkg package '$PLEX_PACKAGE' not found (status: '${status:-none}'), no plexmediaserver snap, no Plex container running; install Plex, set PLEX_MIGRATE_PLEX_PACKAGE, or set PLEX_MIGRATE_REHEARSAL=1 to rehearse without Plex"
    fi
  fi
  if ! [[ $PLEX_VERSION =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+-[0-9a-f]+$ ]]; then
    note "Plex version '$PLEX_VERSION' does not look like X.Y.Z.BUILD-hash; the image tag must be set by hand (plexImageTag)"
  fi
}

# The current log is "Plex Media Server.log"; rotated ones (.1.log ...) only when it is missing.
version_from_logs() {
  local log newest="" line
  if [ -f "$DATA_DIR/Logs/Plex Media Server.log" ]; then
    newest="$DATA_DIR/Logs/Plex Media Server.log"
  else
    for log in "$DATA_DIR/Logs/Plex Media Server."[0-9]*.log; do
      [ -f "$log" ] || continue
      if [ -z "$newest" ] || [ "$log" -nt "$newest" ]; then newest=$log; fi
    done
  fi
  [ -n "$newest" ] ||
    refuse "cannot tell the Plex version: no Logs/\"Plex Media Server.log\" in $DATA_DIR; set PLEX_MIGRATE_PLEX_VERSION"
  line=$(head -n 5 -- "$newest" | grep -o 'Plex Media Server v[0-9][0-9.]*-[0-9a-f]*' | head -n 1 || true)
  [ -n "$line" ] ||
    refuse "cannot tell the Plex version from the first lines of $newest; set PLEX_MIGRATE_PLEX_VERSION"
  PLEX_VERSION=${line#Plex Media Server v}
  PLEX_VERSION_SOURCE="log: ${newest#"$DATA_DIR"/}"
}

# --- systemd --------------------------------------------------------------------------------

# A masked unit (what stop leaves) shows LoadState=masked.
unit_found() {
  case "$(systemctl show -p LoadState --value -- "$1" 2>/dev/null || true)" in loaded | masked) return 0 ;; *) return 1 ;; esac
}
unit_active() { systemctl is-active --quiet -- "$1" 2>/dev/null; }
unit_enabled_state() { systemctl is-enabled -- "$1" 2>/dev/null || true; }

# unit_env UNIT NAME: the value NAME has in UNIT's environment, from every source systemd uses:
# Environment= (unit file and drop-ins, as `systemctl show` merges them), then the
# EnvironmentFile= files in order, which override it (systemd.exec(5)). Empty when unset.
unit_env() {
  local unit=$1 name=$2 value="" line files="" file re
  while IFS= read -r line; do
    case "$line" in
      Environment=*) env_assignment "${line#Environment=}" "$name" && value=$ENV_VALUE ;;
      EnvironmentFiles=*) files+="${line#EnvironmentFiles=}"$'\n' ;;
    esac
  done < <(systemctl show -p Environment -p EnvironmentFiles -- "$unit" 2>/dev/null || true)
  re='^[[:space:]]*(export[[:space:]]+)?'"$name"'=(.*)$'
  # Each EnvironmentFiles line is "PATH (ignore_errors=yes|no)".
  while IFS= read -r file; do
    file=${file% (ignore_errors=*}
    if [ -z "$file" ] || [ ! -f "$file" ] || [ ! -r "$file" ]; then continue; fi
    while IFS= read -r line || [ -n "$line" ]; do
      if [[ $line =~ $re ]]; then value=$(env_file_value "${BASH_REMATCH[2]}"); fi
    done <"$file"
  done <<<"$files"
  printf '%s' "$value"
}

# env_assignment "A=1 \"B=x y\" C=\x20z" NAME: ENV_VALUE=NAME's value; false when absent.
# `systemctl show` quotes an assignment holding spaces whole, or escapes them as \x20.
env_assignment() {
  local env=$1 name=$2
  if [[ $env =~ \"$name=([^\"]*)\" ]]; then
    ENV_VALUE=${BASH_REMATCH[1]}
  elif [[ $env =~ (^|[[:space:]])$name=([^[:space:]]*) ]]; then
    ENV_VALUE=${BASH_REMATCH[2]//\\x20/ }
  else
    return 1
  fi
}

# A value in an EnvironmentFile: quotes stripped, trailing spaces dropped.
env_file_value() {
  local v=$1
  v="${v%"${v##*[![:space:]]}"}"
  if [[ $v =~ ^\"(.*)\"$ ]] || [[ $v =~ ^\'(.*)\'$ ]]; then v=${BASH_REMATCH[1]}; fi
  printf '%s' "$v"
}

# Plex's data dir as its unit sets it (PLEX_MEDIA_SERVER_APPLICATION_SUPPORT_DIR + "/Plex Media
# Server"); copying another folder than the one Plex uses would move stale data, so refuse on a
# clear mismatch.
check_unit_data_dir() {
  local dir
  dir=$(unit_env "$PLEX_SERVICE" PLEX_MEDIA_SERVER_APPLICATION_SUPPORT_DIR)
  [ -n "$dir" ] || return 0
  dir="$dir/Plex Media Server"
  if [ -f "$dir/Preferences.xml" ] && [ "$(realpath -- "$dir")" != "$(realpath -- "$DATA_DIR")" ]; then
    refuse "$PLEX_SERVICE keeps its data in $dir (PLEX_MEDIA_SERVER_APPLICATION_SUPPORT_DIR in its unit's environment), not $DATA_DIR; set plexDataDir to $dir"
  fi
}

# --- processes holding files ----------------------------------------------------------------

# Prints "pid name file" for every process with a file open at or under $1. Files are compared
# by device and inode (stat through /proc/PID/fd/N), not by path: a process in another mount
# namespace (a container with the folder bind-mounted) shows its own path for the same file.
holders_of() {
  local target=$1 inodes
  [ -e "$target" ] || return 0
  [ -d "$CHECK_DIR" ] || mkdir -m 0700 -- "$CHECK_DIR"
  inodes=$(mktemp -- "$CHECK_DIR/inodes.XXXXXX")
  if [ -d "$target" ]; then
    find "$target" -printf '%D:%i\n' 2>/dev/null >>"$inodes" || true
  else
    stat -L -c '%d:%i' -- "$target" >>"$inodes"
  fi
  # shellcheck disable=SC2046 # one argument per process
  find -L /proc/[0-9]*/fd -mindepth 1 -maxdepth 1 -printf '%D:%i %p\n' 2>/dev/null |
    awk -v self="$$" -v bashpid="$BASHPID" 'NR == FNR { want[$1] = 1; next }
      ($1 in want) { split($2, p, "/"); if (p[3] != self && p[3] != bashpid) print p[3], $2 }' "$inodes" - |
    while read -r pid fd; do
      printf '%s %s %s\n' "$pid" "$(tr -d '\n' <"/proc/$pid/comm" 2>/dev/null || echo '?')" \
        "$(readlink -- "$fd" 2>/dev/null || echo '?')"
    done | sort -u -k1,1n || true
  rm -f -- "$inodes"
}

# Waits until no process has anything under $1 open; fails naming the holders after the timeout.
wait_released() {
  local target=$1 what=$2 deadline holders started=$SECONDS next=$SECONDS
  deadline=$((SECONDS + STOP_TIMEOUT))
  while :; do
    holders=$(holders_of "$target")
    [ -z "$holders" ] && return 0
    if [ "$SECONDS" -ge "$next" ]; then
      log "waiting for $what to be let go ($((SECONDS - started))s of ${STOP_TIMEOUT}s), held by (pid name): $(printf '%s\n' "$holders" | awk '{ print $1, $2 }' | sort -u | head -n 3 | tr '\n' ';')"
      next=$((SECONDS + (PROGRESS_SECONDS > 0 ? PROGRESS_SECONDS : 1)))
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      die "$what is still in use after ${STOP_TIMEOUT}s (pid name file): $(printf '%s' "$holders" | head -n 5 | tr '\n' ';') stop these processes and run stop again"
    fi
    sleep 0.5
  done
}

# --- SQLite ---------------------------------------------------------------------------------

# Where each install method puts Plex's own SQLite shell (the only one with Plex's collations
# icu_root and naturalsort): the deb/rpm package, the snap (as PlexDBRepair's DBRepair.sh finds
# them). A Docker install has it inside the image only (/usr/lib/plexmediaserver): without a
# copy on the VM named by PLEX_MIGRATE_PLEX_SQLITE the databases are "not checked".
readonly PLEX_SQLITE_CANDIDATES=("/usr/lib/plexmediaserver/Plex SQLite" "/snap/plexmediaserver/current/Plex SQLite")
readonly PLEX_SQLITE_HELP="the check needs Plex's own SQLite (it has Plex's collations): /usr/lib/plexmediaserver/Plex SQLite from the plexmediaserver package, /snap/plexmediaserver/current/Plex SQLite for the snap, or PLEX_MIGRATE_PLEX_SQLITE naming it"

INTEGRITY_TOOL=""
INTEGRITY_TOOL_NAME=""
pick_integrity_tool() {
  local candidate
  INTEGRITY_TOOL=""
  if [ -n "$PLEX_SQLITE" ]; then
    [ -x "$PLEX_SQLITE" ] || usage_error "PLEX_MIGRATE_PLEX_SQLITE ($PLEX_SQLITE) is not an executable file"
    INTEGRITY_TOOL=$PLEX_SQLITE
  else
    for candidate in "${PLEX_SQLITE_CANDIDATES[@]}"; do
      if [ -x "$candidate" ]; then
        INTEGRITY_TOOL=$candidate
        break
      fi
    done
    if [ -z "$INTEGRITY_TOOL" ] && command -v "Plex SQLite" >/dev/null 2>&1; then
      INTEGRITY_TOOL=$(command -v "Plex SQLite")
    fi
  fi
  if [ -n "$INTEGRITY_TOOL" ]; then
    INTEGRITY_TOOL_NAME="Plex SQLite"
  elif command -v sqlite3 >/dev/null 2>&1; then
    INTEGRITY_TOOL=$(command -v sqlite3)
    INTEGRITY_TOOL_NAME="sqlite3"
    note "Plex SQLite not found; checking the databases with stock sqlite3, which cannot check what uses Plex's collations"
  elif command -v python3 >/dev/null 2>&1; then
    INTEGRITY_TOOL=$(command -v python3)
    INTEGRITY_TOOL_NAME="python3"
    note "neither Plex SQLite nor sqlite3 found; checking the databases with python3's sqlite3 module, which cannot check what uses Plex's collations"
  else
    INTEGRITY_TOOL_NAME=""
    note "no SQLite on the VM (Plex SQLite, sqlite3, python3): the Plex databases are not checked; $PLEX_SQLITE_HELP"
  fi
}

# run_sql DB SQL [readonly]: rows on stdout, one per line.
run_sql() {
  local db=$1 sql=$2 ro=${3:-0}
  if [ "$INTEGRITY_TOOL_NAME" = python3 ]; then
    python3 - "$db" "$sql" "$ro" <<'PY'
import sqlite3, sys, urllib.parse
db, sql, ro = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
uri = "file:" + urllib.parse.quote(db) + ("?mode=ro" if ro else "")
conn = sqlite3.connect(uri, uri=True)
try:
    for row in conn.execute(sql):
        print("|".join("" if v is None else str(v) for v in row))
finally:
    conn.close()
PY
  elif [ "$ro" = 1 ]; then
    "$INTEGRITY_TOOL" -readonly "$db" "$sql"
  else
    "$INTEGRITY_TOOL" "$db" "$sql"
  fi
}

# run_sql with the tool's errors in its output (what an integrity check said, whatever the stream).
run_sql_merged() { run_sql "$@" 2>&1; }

# Copies a database with its -wal (never -shm) into a private dir. Only used when nothing has the
# database open, so the copy is consistent; opening it there cannot touch the original.
copy_db_set() {
  local db=$1 dest=$2
  scratch "$dest" "$dest-wal" "$dest-shm" "$dest-journal"
  with_progress "copying $(basename -- "$db")" "$(stat -c %s -- "$db")" "$dest" \
    cp --preserve=timestamps -- "$db" "$dest"
  if [ -f "$db-wal" ]; then cp --preserve=timestamps -- "$db-wal" "$dest-wal"; fi
}

# check_database DB -> DB_VERDICT (ok|not-checked|failed), DB_RESULT, DB_CHECKED_ON,
# DB_MEDIA_ROOTS (library db only).
check_database() {
  local db=$1 target result rc=0 ro=0 holders=""
  DB_VERDICT=not-checked
  DB_RESULT=""
  DB_MEDIA_ROOTS=()
  DB_CHECKED_ON=""
  if [ -z "$INTEGRITY_TOOL_NAME" ]; then
    DB_RESULT="no SQLite on the VM"
    return 0
  fi
  # Assigned, not tested inline: a failing holders_of inside `[ -n "$(…)" ]` would read as "no
  # holders" and a live database would be copied.
  if [ -e "$db-shm" ]; then holders=$(holders_of "$db"); fi
  if [ -n "$holders" ]; then
    # Live database (Plex running): a read-only connection sees a consistent snapshot and writes
    # nothing; the -shm it needs already exists.
    DB_CHECKED_ON="live database, read-only"
    target=$db
    ro=1
  else
    # Opening a WAL database, even read-only, creates -shm and may checkpoint: check a copy.
    DB_CHECKED_ON="copy"
    [ -d "$CHECK_DIR" ] || mkdir -m 0700 -- "$CHECK_DIR"
    target="$CHECK_DIR/$(basename -- "$db")"
    rm -f -- "$target" "$target-wal" "$target-shm"
    copy_db_set "$db" "$target"
  fi
  log "integrity check of $(basename -- "$db") with $INTEGRITY_TOOL_NAME ($DB_CHECKED_ON)"
  result=$(with_progress "integrity check of $(basename -- "$db")" "$(stat -c %s -- "$db")" "" \
    run_sql_merged "$target" "PRAGMA integrity_check(1);" "$ro") || rc=$?
  if [[ $db == *library.db ]]; then
    # section_locations uses no Plex collation: readable by any SQLite.
    mapfile -t DB_MEDIA_ROOTS < <(run_sql "$target" "SELECT root_path FROM section_locations ORDER BY id;" "$ro" 2>/dev/null || true)
  fi
  if [ "$ro" = 0 ]; then rm -f -- "$target" "$target-wal" "$target-shm"; fi
  if [ "$rc" = 0 ] && [ "$result" = ok ]; then
    DB_VERDICT=ok
    DB_RESULT=ok
    return 0
  fi
  DB_RESULT=$(printf '%s' "$result" | head -n 3 | tr '\n' ' ' | cut -c1-300)
  [ -n "$DB_RESULT" ] || DB_RESULT="exit code $rc"
  # The check ran and reported problems, or SQLite itself says the file is damaged: a verdict
  # whatever the tool. Any other failure of a stock SQLite (no such collation sequence: icu_root,
  # an unknown tokenizer) says nothing about the file.
  if [ "$INTEGRITY_TOOL_NAME" = "Plex SQLite" ] || [ "$rc" = 0 ] ||
    [[ $DB_RESULT =~ (database disk image is malformed|file is not a database) ]]; then
    DB_VERDICT=failed
  fi
}

# Checks both Plex databases; sets DATABASES_OK, INTEGRITY (ok|not-checked), DATABASES_JSON,
# MEDIA_ROOTS, DB_PROBLEMS.
check_plex_databases() {
  local rel db size wal entries=()
  DATABASES_OK=1
  INTEGRITY=ok
  MEDIA_ROOTS=()
  DB_PROBLEMS=()
  pick_integrity_tool
  for rel in "$LIBRARY_DB" "$BLOBS_DB"; do
    db="$DATA_DIR/$rel"
    if [ ! -f "$db" ]; then
      if [ "$rel" = "$BLOBS_DB" ]; then
        note "no blobs database ($(basename -- "$rel")); older Plex versions have none"
        continue
      fi
      DATABASES_OK=0
      DB_PROBLEMS+=("missing $rel")
      continue
    fi
    check_database "$db"
    size=$(stat -c %s -- "$db")
    wal=0
    [ -f "$db-wal" ] && wal=$(stat -c %s -- "$db-wal")
    if [ "$rel" = "$LIBRARY_DB" ]; then MEDIA_ROOTS=(${DB_MEDIA_ROOTS[@]+"${DB_MEDIA_ROOTS[@]}"}); fi
    case "$DB_VERDICT" in
      ok) log "$(basename -- "$db"): ok ($DB_CHECKED_ON)" ;;
      not-checked)
        INTEGRITY=not-checked
        note "$(basename -- "$db"): integrity not checked: ${INTEGRITY_TOOL_NAME:-no SQLite} cannot read it ($DB_RESULT); $PLEX_SQLITE_HELP"
        ;;
      failed)
        DATABASES_OK=0
        DB_PROBLEMS+=("$(basename -- "$db"): integrity check failed: $DB_RESULT")
        log "$(basename -- "$db"): FAILED: $DB_RESULT"
        ;;
    esac
    entries+=("$(json_obj file "$(json_str "$rel")" bytes "$size" walBytes "$wal" \
      ok "$(json_bool "$([ "$DB_VERDICT" = failed ] && echo 0 || echo 1)")" integrity "$(json_str "$DB_VERDICT")" \
      result "$(json_str "$DB_RESULT")" checkedOn "$(json_str "$DB_CHECKED_ON")")")
  done
  DATABASES_JSON=$(json_raw_list ${entries[@]+"${entries[@]}"})
}

# --- sizes ----------------------------------------------------------------------------------

# Bytes the data dir occupies on disk (what the Plex volume must hold), its apparent size, the
# number of regular files, and of all entries (the inodes the volume needs).
measure_library() {
  log "measuring $DATA_DIR"
  local started=$SECONDS
  LIBRARY_BYTES=$(with_progress "measuring the data dir" 0 "" du -s -B1 -- "$DATA_DIR/." | cut -f1)
  LIBRARY_APPARENT_BYTES=$(du -s -b -- "$DATA_DIR/." | cut -f1)
  LIBRARY_FILES=$(find "$DATA_DIR/." -type f -printf x | wc -c)
  FILE_COUNT=$(with_progress "counting the data dir's entries" 0 "" find "$DATA_DIR/." -printf x | wc -c)
  log "measured: $(human_bytes "$LIBRARY_BYTES") on disk in $FILE_COUNT entries, $((SECONDS - started))s"
}

# Symlinks in the data dir that lead out of it: a copy holds only the link, which dangles in the
# cluster. Sets LINK_PROBLEMS.
check_symlinks() {
  local link target real data
  LINK_PROBLEMS=()
  data=$(realpath -- "$DATA_DIR")
  while IFS= read -r -d '' link; do
    target=$(readlink -- "$link")
    real=$(realpath -m -- "$link")
    if [ "$real" != "$data" ] && [[ $real != "$data"/* ]]; then
      LINK_PROBLEMS+=("${link#"$DATA_DIR"/} is a symlink to $target, outside the data dir: the copy would hold only the link. Stop Plex, replace the link by the folder itself (rm the link, then mv $real to where the link was), start Plex, and run again")
    fi
  done < <(find "$DATA_DIR" -type l -print0)
}

free_bytes_at() {
  local dir=$1
  while [ ! -d "$dir" ]; do dir=$(dirname -- "$dir"); done
  df -P -B1 -- "$dir" | awk 'NR==2 {print $4}'
}

# --- Plex settings and the VM ---------------------------------------------------------------

PREFS_XML=""
load_preferences() { PREFS_XML=$(<"$DATA_DIR/Preferences.xml"); }

# pref_attr NAME: the attribute NAME of Plex's <Preferences .../> element, XML-unescaped.
pref_attr() {
  local re="[[:space:]]$1=\"([^\"]*)\"" v
  [[ $PREFS_XML =~ $re ]] || return 0
  v=${BASH_REMATCH[1]}
  v=${v//&quot;/\"}
  v=${v//&apos;/\'}
  v=${v//&lt;/<}
  v=${v//&gt;/>}
  v=${v//&#10;/$'\n'}
  v=${v//&amp;/"&"}
  printf '%s' "$v"
}

preferences_json() {
  json_obj machineIdentifier "$(json_str "$(pref_attr ProcessedMachineIdentifier)")" \
    allowedNetworks "$(json_str "$(pref_attr allowedNetworks)")" \
    lanNetworks "$(json_str "$(pref_attr LanNetworksBandwidth)")" \
    customConnections "$(json_str "$(pref_attr customConnections)")"
}

# Who owns Plex's files (Preferences.xml), with the user's other groups (media shares are often
# readable through one of them).
data_owner_json() {
  local uid gid user group g name gids=() groups=()
  read -r uid gid < <(stat -c '%u %g' -- "$DATA_DIR/Preferences.xml")
  user=$(getent passwd "$uid" | cut -d: -f1) || user=""
  group=$(getent group "$gid" | cut -d: -f1) || group=""
  if [ -n "$user" ]; then
    read -r -a gids <<<"$(id -G -- "$user" 2>/dev/null || true)"
    for g in ${gids[@]+"${gids[@]}"}; do
      [ "$g" != "$gid" ] || continue
      name=$(getent group "$g" | cut -d: -f1) || name=""
      groups+=("$(json_obj name "$(json_str "$name")" gid "$g")")
    done
  fi
  json_obj uid "$uid" gid "$gid" user "$(json_str "$user")" group "$(json_str "$group")" \
    groups "$(json_raw_list ${groups[@]+"${groups[@]}"})"
}

# The IANA time zone Plex runs in: TZ in its unit, else the VM's (/etc/localtime, /etc/timezone).
detect_timezone() {
  local tz="" zone
  if [ "$REHEARSAL" = 0 ] && [ -n "$PLEX_SERVICE" ]; then
    tz=$(unit_env "$PLEX_SERVICE" TZ)
    tz=${tz#:}
  fi
  if [ -z "$tz" ] && [ -L /etc/localtime ]; then
    zone=$(readlink -f /etc/localtime)
    if [[ $zone == */zoneinfo/* ]]; then
      tz=${zone#*/zoneinfo/}
      tz=${tz#posix/}
      tz=${tz#right/}
    fi
  fi
  if [ -z "$tz" ] && [ -f /etc/timezone ]; then tz=$(head -n 1 /etc/timezone); fi
  [[ $tz =~ ^[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)*$ ]] || tz=""
  printf '%s' "$tz"
}

# --- Tautulli -------------------------------------------------------------------------------

# Tautulli keeps tautulli.db and config.ini in its data dir: --datadir, else its program dir;
# --config moves config.ini (Tautulli.py). Sets TAUTULLI_UNIT_DATADIR / TAUTULLI_UNIT_CONFIG
# from the unit's ExecStart.
TAUTULLI_UNIT_DATADIR=""
TAUTULLI_UNIT_CONFIG=""
read_tautulli_unit() {
  local exec argv=() arg next=""
  [ "$REHEARSAL" = 0 ] && [ -n "$TAUTULLI_SERVICE" ] && unit_found "$TAUTULLI_SERVICE" || return 0
  exec=$(systemctl show -p ExecStart --value -- "$TAUTULLI_SERVICE" 2>/dev/null || true)
  [[ $exec =~ argv\[\]=([^\;]*) ]] || return 0
  read -r -a argv <<<"${BASH_REMATCH[1]}"
  for arg in ${argv[@]+"${argv[@]}"}; do
    case "$next" in
      datadir) TAUTULLI_UNIT_DATADIR=$arg ;;
      config) TAUTULLI_UNIT_CONFIG=$arg ;;
    esac
    [ -z "$next" ] || { next=""; continue; }
    case "$arg" in
      --datadir) next=datadir ;;
      --datadir=*) TAUTULLI_UNIT_DATADIR=${arg#--datadir=} ;;
      --config) next=config ;;
      --config=*) TAUTULLI_UNIT_CONFIG=${arg#--config=} ;;
    esac
  done
}

# Refuses when Tautulli's unit points at another database than tautulliDbPath.
check_tautulli_paths() {
  read_tautulli_unit
  [ -n "$TAUTULLI_DB" ] && [ -n "$TAUTULLI_UNIT_DATADIR" ] || return 0
  local unit_db="$TAUTULLI_UNIT_DATADIR/tautulli.db"
  if [ -f "$unit_db" ] && [ "$(realpath -- "$unit_db")" != "$(realpath -m -- "$TAUTULLI_DB")" ]; then
    refuse "$TAUTULLI_SERVICE keeps its database in $unit_db (--datadir $TAUTULLI_UNIT_DATADIR in its unit), not $TAUTULLI_DB; set tautulliDbPath to $unit_db"
  fi
}

# Where Tautulli is when it is not where the settings say: the snap (Tautulli's
# snap/snapcraft.yaml runs it as root with --datadir $SNAP_USER_COMMON/Tautulli, i.e.
# /root/snap/tautulli/common/Tautulli) or a container (tautulli/tautulli, linuxserver/tautulli:
# --datadir /config). Prints " (…what to set…)" or nothing.
readonly TAUTULLI_SNAP_UNIT="snap.tautulli.tautulli"
readonly TAUTULLI_SNAP_DB="/root/snap/tautulli/common/Tautulli/tautulli.db"
tautulli_install_hint() {
  local container name image source
  [ "$REHEARSAL" = 0 ] || return 0
  if command -v snap >/dev/null 2>&1 && snap list tautulli >/dev/null 2>&1; then
    printf ' (Tautulli is installed as a snap here: set tautulliService to %s and tautulliDbPath to %s)' \
      "$TAUTULLI_SNAP_UNIT" "$TAUTULLI_SNAP_DB"
    return 0
  fi
  command -v docker >/dev/null 2>&1 || return 0
  container=$(docker ps --format '{{.Names}} {{.Image}}' 2>/dev/null |
    awk '$2 ~ /(^|\/)tautulli(:|$)/ { print; exit }' || true)
  [ -n "$container" ] || return 0
  name=${container%% *}
  image=${container#* }
  source=$(docker inspect -f '{{range .Mounts}}{{if eq .Destination "/config"}}{{.Source}}{{end}}{{end}}' -- "$name" 2>/dev/null || true)
  printf ' (Tautulli runs in the container %s (image %s): set tautulliDbPath to %s/tautulli.db, its /config on this host, and tautulliService to "" (its database is then snapshotted live, read-only) or to a systemd unit that runs the container)' \
    "$name" "$image" "${source:-<the host folder mounted at /config>}"
}

tautulli_config_file() {
  if [ -n "$TAUTULLI_UNIT_CONFIG" ]; then printf '%s' "$TAUTULLI_UNIT_CONFIG"
  else printf '%s' "$(dirname -- "$TAUTULLI_DB")/config.ini"; fi
}

# Consistent copy of tautulli.db through SQLite's online backup API (includes committed WAL
# content). A live database (-shm present, opened by Tautulli) is read in place read-only;
# otherwise its files are copied first so that opening it cannot create or checkpoint anything
# next to the original.
snapshot_tautulli() {
  local dest=$1 scratch_db="$CHECK_DIR/tautulli-source.db" source mode holders=""
  [ -d "$CHECK_DIR" ] || mkdir -m 0700 -- "$CHECK_DIR"
  rm -f -- "$dest" "$scratch_db" "$scratch_db-wal" "$scratch_db-shm"
  scratch "$dest-journal" "$dest-wal"
  if [ -e "$TAUTULLI_DB-shm" ]; then holders=$(holders_of "$TAUTULLI_DB"); fi
  if [ -n "$holders" ]; then
    source=$TAUTULLI_DB
    mode=ro
  else
    copy_db_set "$TAUTULLI_DB" "$scratch_db"
    source=$scratch_db
    mode=rw
  fi
  with_progress "Tautulli snapshot" "$(stat -c %s -- "$TAUTULLI_DB")" "$dest" \
    python3 - "$source" "$dest" "$mode" <<'PY' || die "the Tautulli snapshot failed (see above)"
import sqlite3, sys, urllib.parse
source, dest, mode = sys.argv[1], sys.argv[2], sys.argv[3]
uri = "file:" + urllib.parse.quote(source) + ("?mode=ro" if mode == "ro" else "")
src = sqlite3.connect(uri, uri=True)
dst = sqlite3.connect(dest)
try:
    src.backup(dst, pages=1024)
    dst.execute("PRAGMA journal_mode=DELETE")
    result = dst.execute("PRAGMA quick_check").fetchone()[0]
    if result != "ok":
        sys.exit("tautulli.db snapshot failed quick_check: " + result)
finally:
    dst.close()
    src.close()
PY
  rm -f -- "$scratch_db" "$scratch_db-wal" "$scratch_db-shm"
}

# file_entry_json FILE [PATH]: {"path":PATH or FILE,"sha256":…,"bytes":…}. Sum and size go
# through variables: a command substitution that is only an argument sets no exit status, so a
# failed sha256 there would become "" even under `set -e`. Called as `x=$(file_entry_json …)`,
# it stops at the first failure only because of inherit_errexit.
file_entry_json() {
  local sum bytes
  sum=$(sha256_of "$1")
  bytes=$(stat -c %s -- "$1")
  json_obj path "$(json_str "${2:-$1}")" sha256 "\"$sum\"" bytes "$bytes"
}

# The snapshot set in the work dir: tautulli.db (backup API) and config.ini. Sets
# TAUTULLI_SNAPSHOT_JSON and TAUTULLI_CONFIG_JSON (null when there is none).
take_tautulli_snapshot() {
  TAUTULLI_SNAPSHOT_JSON=null
  TAUTULLI_CONFIG_JSON=null
  [ -n "$TAUTULLI_DB" ] || return 0
  [ -f "$TAUTULLI_DB" ] ||
    refuse "tautulli.db not found at $TAUTULLI_DB: set tautulliDbPath$(tautulli_install_hint)"
  command -v python3 >/dev/null 2>&1 || refuse "python3 is missing on the VM (needed for the Tautulli snapshot)"
  [ -d "$SNAPSHOT_DIR" ] || mkdir -m 0700 -- "$SNAPSHOT_DIR"
  local partial="$SNAPSHOT_DIR/tautulli.db.partial" config
  scratch "$partial" "$SNAPSHOT_DIR/config.ini.partial"
  log "snapshotting $TAUTULLI_DB with SQLite's backup API into $SNAPSHOT_DIR"
  snapshot_tautulli "$partial"
  mv -f -- "$partial" "$SNAPSHOT_DIR/tautulli.db"
  TAUTULLI_SNAPSHOT_JSON=$(file_entry_json "$SNAPSHOT_DIR/tautulli.db")
  config=$(tautulli_config_file)
  if [ -f "$config" ]; then
    rm -f -- "$SNAPSHOT_DIR/config.ini.partial"
    cp -- "$config" "$SNAPSHOT_DIR/config.ini.partial"
    mv -f -- "$SNAPSHOT_DIR/config.ini.partial" "$SNAPSHOT_DIR/config.ini"
    TAUTULLI_CONFIG_JSON=$(file_entry_json "$SNAPSHOT_DIR/config.ini")
  else
    rm -f -- "$SNAPSHOT_DIR/config.ini"
    note "no Tautulli config.ini at $config: only tautulli.db is in the snapshot"
  fi
}

# sha256 of each Plex database file (and its -wal) as the stop left them: what the copy in the
# cluster must match. Sets PLEX_DATABASES_JSON.
plex_database_sums() {
  local rel file entry entries=()
  for rel in "$LIBRARY_DB" "$LIBRARY_DB-wal" "$BLOBS_DB" "$BLOBS_DB-wal"; do
    file="$DATA_DIR/$rel"
    [ -f "$file" ] || continue
    entry=$(file_entry_json "$file" "$rel")
    entries+=("$entry")
  done
  PLEX_DATABASES_JSON=$(json_raw_list ${entries[@]+"${entries[@]}"})
}

# --- steps ----------------------------------------------------------------------------------

cmd_preflight() {
  local problems=() plex_running=0 plex_found=0 owner free required reclaimable=0 f
  require_data_dir
  detect_plex_version
  log "Plex version $PLEX_VERSION (from $PLEX_VERSION_SOURCE)"
  if [ "$REHEARSAL" = 1 ]; then
    note "rehearsal: systemctl and dpkg-query not used"
  else
    command -v systemctl >/dev/null 2>&1 || refuse "systemctl is missing; plex-migrate expects a systemd VM (or PLEX_MIGRATE_REHEARSAL=1)"
    if unit_found "$PLEX_SERVICE"; then
      plex_found=1
      if unit_active "$PLEX_SERVICE"; then plex_running=1; fi
      check_unit_data_dir
    else
      problems+=("systemd unit $PLEX_SERVICE not found: set plexService to the unit that runs Plex")
    fi
    check_tautulli_paths
  fi
  owner=$(stat -c '%u:%g' -- "$DATA_DIR/Preferences.xml")
  load_preferences
  measure_library
  check_symlinks
  problems+=(${LINK_PROBLEMS[@]+"${LINK_PROBLEMS[@]}"})
  check_plex_databases
  problems+=(${DB_PROBLEMS[@]+"${DB_PROBLEMS[@]}"})
  command -v python3 >/dev/null 2>&1 || problems+=("python3 is missing on the VM: it snapshots tautulli.db; install python3")
  command -v rsync >/dev/null 2>&1 || problems+=("rsync is missing on the VM: the cluster pulls the library through its read-only server (rrsync); apt-get install rsync")

  local tautulli_json=null tautulli_bytes=0 tautulli_service_found=0 tautulli_running=0
  if [ -n "$TAUTULLI_DB" ]; then
    if [ -f "$TAUTULLI_DB" ]; then
      tautulli_bytes=$(stat -c %s -- "$TAUTULLI_DB")
      [ -f "$TAUTULLI_DB-wal" ] && tautulli_bytes=$((tautulli_bytes + $(stat -c %s -- "$TAUTULLI_DB-wal")))
    else
      problems+=("tautulli.db not found at $TAUTULLI_DB: set tautulliDbPath$(tautulli_install_hint)")
    fi
    if [ "$REHEARSAL" = 0 ] && [ -n "$TAUTULLI_SERVICE" ]; then
      if unit_found "$TAUTULLI_SERVICE"; then
        tautulli_service_found=1
        if unit_active "$TAUTULLI_SERVICE"; then tautulli_running=1; fi
      else
        note "systemd unit $TAUTULLI_SERVICE not found: Tautulli is not stopped by plex-migrate; its database is copied with SQLite's online backup$(tautulli_install_hint)"
      fi
    fi
    tautulli_json=$(json_obj path "$(json_str "$TAUTULLI_DB")" found "$(json_bool "$([ -f "$TAUTULLI_DB" ] && echo 1 || echo 0)")" \
      bytes "$tautulli_bytes" config "$(json_str "$(tautulli_config_file)")" service "$(json_str "$TAUTULLI_SERVICE")" \
      serviceFound "$(json_bool "$tautulli_service_found")" running "$(json_bool "$tautulli_running")")
  fi

  # Space in the work dir: the Tautulli snapshot (at most the database and its -wal) and the copy
  # of the largest Plex database (with its -wal) that the integrity check opens; the library
  # itself is copied straight from the data dir, never into the work dir.
  free=$(free_bytes_at "$WORK_DIR")
  for f in "$SNAPSHOT_DIR"/tautulli.db "$SNAPSHOT_DIR"/config.ini; do
    [ -f "$f" ] && reclaimable=$((reclaimable + $(stat -c %s -- "$f")))
  done
  local largest_db=0 db_bytes rel
  for rel in "$LIBRARY_DB" "$BLOBS_DB"; do
    [ -f "$DATA_DIR/$rel" ] || continue
    db_bytes=$(stat -c %s -- "$DATA_DIR/$rel")
    [ -f "$DATA_DIR/$rel-wal" ] && db_bytes=$((db_bytes + $(stat -c %s -- "$DATA_DIR/$rel-wal")))
    [ "$db_bytes" -le "$largest_db" ] || largest_db=$db_bytes
  done
  required=$((tautulli_bytes + largest_db + 64 * 1024 * 1024))
  if [ $((free + reclaimable)) -lt "$required" ]; then
    problems+=("not enough free disk in the work dir $WORK_DIR for the Tautulli snapshot and the database check: need $required bytes, have $((free + reclaimable)); free space there or set vmWorkDir to a bigger disk")
  fi

  local ok=1 token_json='""'
  [ "${#problems[@]}" -eq 0 ] || ok=0
  # The Plex token only in a summary that succeeds: a failed step's output lands in error
  # messages, which are never secret.
  if [ "$ok" = 1 ]; then token_json=$(json_str "$(pref_attr PlexOnlineToken)"); fi
  json_obj step '"preflight"' ok "$(json_bool "$ok")" rehearsal "$(json_bool "$REHEARSAL")" \
    install "$(json_str "$INSTALL")" plexVersion "$(json_str "$PLEX_VERSION")" plexVersionSource "$(json_str "$PLEX_VERSION_SOURCE")" \
    plexService "$(json_str "$PLEX_SERVICE")" plexServiceFound "$(json_bool "$plex_found")" \
    plexRunning "$(json_bool "$plex_running")" dataDir "$(json_str "$DATA_DIR")" \
    dataDirOwner "$(json_str "$owner")" dataOwner "$(data_owner_json)" \
    libraryBytes "$LIBRARY_BYTES" libraryApparentBytes "$LIBRARY_APPARENT_BYTES" \
    libraryFiles "$LIBRARY_FILES" fileCount "$FILE_COUNT" workDir "$(json_str "$WORK_DIR")" \
    freeBytes "$free" requiredFreeBytes "$required" databasesOk "$(json_bool "$DATABASES_OK")" \
    integrity "$(json_str "$INTEGRITY")" integrityTool "$(json_str "$INTEGRITY_TOOL_NAME")" \
    integrityToolPath "$(json_str "$INTEGRITY_TOOL")" databases "$DATABASES_JSON" \
    mediaRoots "$(json_list ${MEDIA_ROOTS[@]+"${MEDIA_ROOTS[@]}"})" timezone "$(json_str "$(detect_timezone)")" \
    preferences "$(preferences_json)" plexToken "$token_json" tautulli "$tautulli_json" \
    notes "$(json_notes)" problems "$(json_list ${problems[@]+"${problems[@]}"})"
  printf '\n'
  if [ "$ok" != 1 ]; then
    local p
    for p in "${problems[@]}"; do log "problem: $p"; done
    refuse "preflight found ${#problems[@]} problem(s); nothing was changed"
  fi
  log "preflight ok"
}

PREVIOUS_STATE_FILE="$STATE_DIR/previous-state"
RESTORED_STATE_FILE="$STATE_DIR/previous-state.restored"

# Records once, before the first stop, whether each unit was active and enabled, so rollback
# restores exactly that. Lines: "plex|tautulli UNIT ACTIVE(0/1) ENABLED(0/1) UNIT-FILE-STATE".
record_previous_state() {
  [ ! -f "$PREVIOUS_STATE_FILE" ] || return 0
  local role unit active enabled state lines=""
  for role in plex tautulli; do
    unit=$PLEX_SERVICE
    [ "$role" = plex ] || unit=$TAUTULLI_SERVICE
    if [ -z "$unit" ] || ! unit_found "$unit"; then continue; fi
    active=0
    unit_active "$unit" && active=1
    state=$(unit_enabled_state "$unit")
    enabled=0
    case "$state" in enabled | enabled-runtime | alias | linked | linked-runtime) enabled=1 ;; esac
    lines+="$role $unit $active $enabled ${state:-unknown}"$'\n'
  done
  [ -d "$STATE_DIR" ] || mkdir -m 0700 -- "$STATE_DIR"
  rm -f -- "$PREVIOUS_STATE_FILE.partial"
  printf '%s' "$lines" >"$PREVIOUS_STATE_FILE.partial"
  mv -f -- "$PREVIOUS_STATE_FILE.partial" "$PREVIOUS_STATE_FILE"
}

# previous_state_json FILE: {"plex":{…}|null,"tautulli":{…}|null}
previous_state_json() {
  local file=$1 role unit active enabled state plex=null tautulli=null entry
  if [ -f "$file" ]; then
    while read -r role unit active enabled state; do
      entry=$(json_obj unit "$(json_str "$unit")" active "$(json_bool "$active")" \
        enabled "$(json_bool "$enabled")" unitFileState "$(json_str "$state")")
      case "$role" in plex) plex=$entry ;; tautulli) tautulli=$entry ;; esac
    done <"$file"
  fi
  json_obj plex "$plex" tautulli "$tautulli"
}

# Masks UNIT so nothing starts it again (a reboot, a package upgrade whose maintainer script
# enables and starts it, a dependency), then stops it. `mask` links the unit to /dev/null in
# /etc/systemd/system; systemd refuses that when the unit's own file lives there (a hand-written
# tautulli.service), and then a runtime mask (/run/systemd/system, gone at reboot) plus
# `disable` does the same job. The mode is recorded for rollback.
stop_unit() {
  local unit=$1 mode_file="$STATE_DIR/$1.mask" mode
  unit_found "$unit" || return 0
  [ -d "$STATE_DIR" ] || mkdir -m 0700 -- "$STATE_DIR"
  if [ -f "$mode_file" ]; then
    mode=$(<"$mode_file")
  elif systemctl --no-ask-password mask -- "$unit" >&2 2>/dev/null; then
    mode=persistent
  else
    systemctl --no-ask-password mask --runtime -- "$unit" >&2 || die "systemctl mask $unit failed"
    systemctl --no-ask-password disable -- "$unit" >&2 2>/dev/null || die "systemctl disable $unit failed"
    mode=runtime
  fi
  [ -f "$mode_file" ] || printf '%s\n' "$mode" >"$mode_file"
  log "stopping $unit (masked: $mode)"
  systemctl --no-ask-password stop -- "$unit" >&2 || die "systemctl stop $unit failed"
}

cmd_stop() {
  local unit
  require_data_dir
  if [ "$REHEARSAL" = 1 ]; then
    note "rehearsal: no services stopped"
  else
    command -v systemctl >/dev/null 2>&1 || refuse "systemctl is missing; plex-migrate expects a systemd VM (or PLEX_MIGRATE_REHEARSAL=1)"
    unit_found "$PLEX_SERVICE" || refuse "systemd unit $PLEX_SERVICE not found: set plexService to the unit that runs Plex"
    check_tautulli_paths
    record_previous_state
    for unit in "$TAUTULLI_SERVICE" "$PLEX_SERVICE"; do
      [ -n "$unit" ] || continue
      stop_unit "$unit"
    done
  fi
  log "waiting until no process has files open in the Plex data dir"
  wait_released "$DATA_DIR" "the Plex data dir"
  if [ -n "$TAUTULLI_DB" ] && [ -f "$TAUTULLI_DB" ] && { [ "$REHEARSAL" = 1 ] || unit_found "$TAUTULLI_SERVICE"; }; then
    wait_released "$TAUTULLI_DB" "tautulli.db"
  fi
  check_plex_databases
  if [ "$DATABASES_OK" != 1 ]; then
    die "the Plex databases failed the integrity check after the stop: ${DB_PROBLEMS[*]}. Plex stays stopped; repair them (e.g. PlexDBRepair) or run rollback to start Plex again"
  fi
  plex_database_sums
  take_tautulli_snapshot
  json_obj step '"stop"' stoppedAt "$(json_str "$(now_iso)")" rehearsal "$(json_bool "$REHEARSAL")" \
    databasesOk true integrity "$(json_str "$INTEGRITY")" integrityTool "$(json_str "$INTEGRITY_TOOL_NAME")" \
    databases "$DATABASES_JSON" plexDatabases "$PLEX_DATABASES_JSON" \
    tautulliSnapshot "$TAUTULLI_SNAPSHOT_JSON" tautulliConfig "$TAUTULLI_CONFIG_JSON" \
    previousState "$(previous_state_json "$PREVIOUS_STATE_FILE")" notes "$(json_notes)"
  printf '\n'
  log "stopped; databases $INTEGRITY"
}

# --- sync access ----------------------------------------------------------------------------
# The cluster pulls the data dir with rsync over SSH, authenticated by the migration's own key.
# That key may run one thing: rrsync -ro confined to the data dir (a read-only rsync server that
# refuses paths outside it and every writing option), with `restrict` (no pty, no forwarding, no
# ~/.ssh/rc) and `from=` the cluster's addresses when given.

readonly SYNC_KEY_COMMENT="plex-migrate-sync"
# Ubuntu 22.04/24.04 (rsync >= 3.2.4) install rrsync (python3) as /usr/bin/rrsync; 20.04
# (rsync 3.1.3) ships it (perl) only as documentation, gzipped.
readonly SYNC_RRSYNC_SEARCH_DEFAULT="/usr/bin/rrsync:/usr/share/doc/rsync/scripts/rrsync:/usr/share/doc/rsync/scripts/rrsync.gz"

sync_settings() {
  SYNC_PUBLIC_KEY=${PLEX_MIGRATE_SYNC_PUBLIC_KEY:-}
  SYNC_ALLOWED_CIDRS=${PLEX_MIGRATE_SYNC_ALLOWED_CIDRS:-}
  SYNC_RRSYNC_SEARCH=${PLEX_MIGRATE_SYNC_RRSYNC_SEARCH:-$SYNC_RRSYNC_SEARCH_DEFAULT}
  SYNC_USER=${PLEX_MIGRATE_SYNC_USER:-${SUDO_USER:-$(id -un)}}
  SYNC_DIR="$WORK_DIR/sync"
  [[ $SYNC_USER =~ ^[a-z_][a-z0-9_.-]*$ ]] || usage_error "PLEX_MIGRATE_SYNC_USER '$SYNC_USER' is not a user name"
  local home
  home=$(getent passwd "$SYNC_USER" | cut -d: -f6) || true
  SYNC_AUTHORIZED_KEYS=${PLEX_MIGRATE_SYNC_AUTHORIZED_KEYS:-}
  if [ -z "$SYNC_AUTHORIZED_KEYS" ]; then
    [ -n "$home" ] || refuse "the VM user $SYNC_USER has no home directory for ~/.ssh/authorized_keys"
    SYNC_AUTHORIZED_KEYS="$home/.ssh/authorized_keys"
  fi
}

sync_key_parts() {
  [[ $SYNC_PUBLIC_KEY =~ ^(ssh-ed25519|ecdsa-sha2-nistp(256|384|521)|ssh-rsa)\ ([A-Za-z0-9+/]+=*)(\ .*)?$ ]] ||
    usage_error "PLEX_MIGRATE_SYNC_PUBLIC_KEY is not an OpenSSH public key line (\"ssh-ed25519 AAAA...\")"
  SYNC_KEY_TYPE=${BASH_REMATCH[1]}
  SYNC_KEY_BLOB=${BASH_REMATCH[3]}
}

sync_from_option() {
  local cidrs=() cidr list=""
  [ -n "$SYNC_ALLOWED_CIDRS" ] || return 0
  IFS=',' read -r -a cidrs <<<"$SYNC_ALLOWED_CIDRS"
  for cidr in "${cidrs[@]}"; do
    cidr=${cidr// /}
    [ -n "$cidr" ] || continue
    [[ $cidr =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}(/[0-9]{1,2})?$ || $cidr =~ ^[0-9A-Fa-f:]+(/[0-9]{1,3})?$ ]] ||
      usage_error "PLEX_MIGRATE_SYNC_ALLOWED_CIDRS entry '$cidr' is not an address or CIDR (e.g. 10.42.0.0/16)"
    list+="${list:+,}$cidr"
  done
  [ -z "$list" ] || printf 'from="%s",' "$list"
}

# The rrsync to force, made runnable: a gzipped or non-executable copy goes to the work dir.
find_rrsync() {
  local candidate interpreter search=()
  IFS=':' read -r -a search <<<"$SYNC_RRSYNC_SEARCH"
  RRSYNC=""
  for candidate in "${search[@]}"; do
    [ -f "$candidate" ] || continue
    mkdir -p -- "$SYNC_DIR"
    chmod 0755 -- "$SYNC_DIR"
    case "$candidate" in
      *.gz) gzip -dc -- "$candidate" >|"$SYNC_DIR/rrsync" || die "cannot unpack $candidate" ;;
      *) if [ -x "$candidate" ]; then RRSYNC=$candidate; else cp -f -- "$candidate" "$SYNC_DIR/rrsync"; fi ;;
    esac
    [ -n "$RRSYNC" ] || { chmod 0755 -- "$SYNC_DIR/rrsync" && RRSYNC="$SYNC_DIR/rrsync"; }
    break
  done
  [ -n "$RRSYNC" ] ||
    refuse "rrsync (rsync's restricted server) is not on the VM (looked in ${SYNC_RRSYNC_SEARCH//:/, }); install the rsync package (apt-get install rsync)"
  command -v rsync >/dev/null 2>&1 || refuse "rsync is not installed on the VM: apt-get install rsync"
  interpreter=$(head -n 1 -- "$RRSYNC" | sed -n 's/^#! *\([^ ]*\).*/\1/p')
  if [ -z "$interpreter" ] || [ ! -x "$interpreter" ]; then
    refuse "$RRSYNC needs ${interpreter:-an interpreter}, which is missing on the VM (install perl or python3)"
  fi
}

# Root reads everything in the data dir; another user reaches it through sudo, which must keep
# SSH_ORIGINAL_COMMAND (rrsync reads the client's request from it).
sync_forced_command() {
  local cmd
  # Single quotes: sshd passes the command to the user's shell; paths hold no quote (checked).
  cmd="'$RRSYNC' -ro '$DATA_DIR'"
  if [ "$(id -u -- "$SYNC_USER")" != 0 ]; then
    # shellcheck disable=SC2016 # expanded by the probe's shell, after sudo
    if ! runuser -u "$SYNC_USER" -- env SSH_ORIGINAL_COMMAND=plex-migrate-probe \
      sudo -n --preserve-env=SSH_ORIGINAL_COMMAND -- /bin/sh -c '[ "$SSH_ORIGINAL_COMMAND" = plex-migrate-probe ]' >/dev/null 2>&1; then
      refuse "the VM user $SYNC_USER needs passwordless sudo that keeps SSH_ORIGINAL_COMMAND for the read-only rsync server (a rule such as \"$SYNC_USER ALL=(root) NOPASSWD: ALL\"), or set vmUser to root"
    fi
    cmd="sudo -n --preserve-env=SSH_ORIGINAL_COMMAND -- $cmd"
  fi
  printf '%s' "$cmd"
}

# Writes $SYNC_AUTHORIZED_KEYS without our lines for $1 (a key blob, or "" for any), plus the
# line $2 if given; in place of the old file (same owner and mode), only when it changes.
rewrite_authorized_keys() {
  local blob=$1 line=${2:-} file=$SYNC_AUTHORIZED_KEYS tmp
  tmp="$file.plex-migrate.$$"
  if [ -f "$file" ]; then
    awk -v blob="$blob" -v comment="$SYNC_KEY_COMMENT" '
      { n = split($0, f, " ") }
      n >= 2 && f[n] == comment && (blob == "" || f[n - 1] == blob) { next }
      { print }' "$file" >|"$tmp"
  else
    : >|"$tmp"
  fi
  [ -z "$line" ] || printf '%s\n' "$line" >>"$tmp"
  if [ -f "$file" ] && cmp -s -- "$tmp" "$file"; then
    rm -f -- "$tmp"
    return 1
  fi
  if [ -f "$file" ]; then
    chown --reference="$file" -- "$tmp"
    chmod --reference="$file" -- "$tmp"
  else
    chown -- "$SYNC_USER:" "$tmp" 2>/dev/null || true
    chmod 0600 -- "$tmp"
  fi
  mv -f -- "$tmp" "$file"
}

cmd_authorize_sync() {
  local forced line fingerprint dir changed=0
  require_data_dir
  sync_settings
  [ -n "$SYNC_PUBLIC_KEY" ] || usage_error "PLEX_MIGRATE_SYNC_PUBLIC_KEY (the migration's public key) is not set"
  sync_key_parts
  [[ $DATA_DIR != *[\"\'\\]* ]] || refuse "the data dir path $DATA_DIR holds a quote or backslash, which an authorized_keys command cannot carry"
  find_rrsync
  forced=$(sync_forced_command)
  line="restrict,$(sync_from_option)command=\"$forced\" $SYNC_KEY_TYPE $SYNC_KEY_BLOB $SYNC_KEY_COMMENT"
  dir=$(dirname -- "$SYNC_AUTHORIZED_KEYS")
  if [ ! -d "$dir" ]; then
    mkdir -p -- "$dir"
    chmod 0700 -- "$dir"
    chown -- "$SYNC_USER:" "$dir" 2>/dev/null || true
  fi
  if rewrite_authorized_keys "$SYNC_KEY_BLOB" "$line"; then changed=1; fi
  fingerprint=$(ssh-keygen -l -E sha256 -f /dev/stdin <<<"$SYNC_KEY_TYPE $SYNC_KEY_BLOB" 2>/dev/null | awk '{ print $2 }') || true
  log "authorized the migration key ${fingerprint:-} for $SYNC_USER in $SYNC_AUTHORIZED_KEYS: $forced$([ "$changed" = 0 ] && echo ' (already there)')"
  printf '{"step":"authorize-sync","user":%s,"authorizedKeysFile":%s,"forcedCommand":%s,"keyFingerprint":%s,"changed":%s,"notes":%s}\n' \
    "$(json_str "$SYNC_USER")" "$(json_str "$SYNC_AUTHORIZED_KEYS")" "$(json_str "$forced")" \
    "$(json_str "$fingerprint")" "$(json_bool "$changed")" "$(json_notes)"
}

cmd_revoke_sync() {
  local revoked=0 removed=()
  sync_settings
  SYNC_KEY_BLOB=""
  if [ -n "$SYNC_PUBLIC_KEY" ]; then sync_key_parts; fi
  if [ -f "$SYNC_AUTHORIZED_KEYS" ] && rewrite_authorized_keys "$SYNC_KEY_BLOB"; then
    revoked=1
    removed+=("$SYNC_AUTHORIZED_KEYS")
    log "removed the migration key from $SYNC_AUTHORIZED_KEYS"
  else
    log "the migration key was not authorized in $SYNC_AUTHORIZED_KEYS"
  fi
  if [ -d "$SYNC_DIR" ]; then
    rm -rf -- "$SYNC_DIR"
    removed+=("$SYNC_DIR")
  fi
  printf '{"step":"revoke-sync","revoked":%s,"removed":%s,"notes":%s}\n' \
    "$(json_bool "$revoked")" "$(json_list ${removed[@]+"${removed[@]}"})" "$(json_notes)"
}

# restore_unit UNIT ACTIVE ENABLED: unmask, put the enablement back as it was, start only what
# was running. Appends UNIT to STARTED when it started it.
restore_unit() {
  local unit=$1 active=$2 enabled=$3 mode_file="$STATE_DIR/$1.mask" mode=persistent now i
  [ -f "$mode_file" ] && mode=$(<"$mode_file")
  if [ "$mode" = runtime ]; then
    systemctl --no-ask-password unmask --runtime -- "$unit" >&2 || die "systemctl unmask --runtime $unit failed"
  else
    systemctl --no-ask-password unmask -- "$unit" >&2 || die "systemctl unmask $unit failed"
  fi
  now=$(unit_enabled_state "$unit")
  if [ "$enabled" = 1 ] && [ "$now" != enabled ]; then
    systemctl --no-ask-password enable -- "$unit" >&2 2>/dev/null || die "systemctl enable $unit failed"
  elif [ "$enabled" = 0 ] && [ "$now" = enabled ]; then
    systemctl --no-ask-password disable -- "$unit" >&2 2>/dev/null || die "systemctl disable $unit failed"
  fi
  rm -f -- "$mode_file"
  if [ "$active" != 1 ]; then
    log "$unit was not running before the migration: left stopped"
    return 0
  fi
  log "starting $unit"
  systemctl --no-ask-password start -- "$unit" >&2 || die "systemctl start $unit failed; see journalctl -u $unit"
  for ((i = 0; i < 60; i++)); do
    unit_active "$unit" && break
    sleep 0.5
  done
  unit_active "$unit" || die "$unit did not become active within 30s; see journalctl -u $unit"
  STARTED+=("$unit")
}

cmd_rollback() {
  local role unit active enabled state restored_json
  STARTED=()
  if [ "$REHEARSAL" = 1 ]; then
    note "rehearsal: no services started"
  elif [ -f "$PREVIOUS_STATE_FILE" ]; then
    # After the stop the data went to the cluster, whose Plex starts with the same server
    # identity; two servers with one identity confuse every client and plex.tv.
    if [ "$ROLLBACK_FORCE" != 1 ]; then
      refuse "the migrated Plex may be running in the cluster with this server's identity (the stop step handed the data over); stop it first (e.g. scale its StatefulSet to 0 or pulumi destroy), then run rollback --force (pulumi destroy with rollbackOnDestroy does this itself, after deleting the cluster's Plex)"
    fi
    while read -r role unit active enabled state; do
      [ -n "$unit" ] || continue
      if unit_found "$unit"; then restore_unit "$unit" "$active" "$enabled"; else note "unit $unit is gone; nothing to restore"; fi
    done <"$PREVIOUS_STATE_FILE"
    mv -f -- "$PREVIOUS_STATE_FILE" "$RESTORED_STATE_FILE"
  elif [ -f "$RESTORED_STATE_FILE" ]; then
    note "already rolled back: the services are as they were before the migration"
  else
    note "no stop was recorded in $WORK_DIR: nothing to restore"
  fi
  restored_json=$(previous_state_json "$RESTORED_STATE_FILE")
  json_obj step '"rollback"' startedAt "$(json_str "$(now_iso)")" rehearsal "$(json_bool "$REHEARSAL")" \
    forced "$(json_bool "$ROLLBACK_FORCE")" started "$(json_list ${STARTED[@]+"${STARTED[@]}"})" \
    previousState "$restored_json" notes "$(json_notes)"
  printf '\n'
  log "rollback done: services as before the migration"
}

main() {
  local step=${1:-}
  case "$step" in
    preflight | authorize-sync | stop | revoke-sync | rollback) ;;
    -h | --help | help)
      sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
      return 0
      ;;
    *)
      STEP="plex-migrate-source"
      usage_error "usage: plex-migrate-source.sh preflight|authorize-sync|stop|revoke-sync|rollback (got '${step}')"
      ;;
  esac
  STEP=$step
  shift
  while [ $# -gt 0 ]; do
    case "$step:$1" in
      rollback:--force) ROLLBACK_FORCE=1 ;;
      *) usage_error "unknown argument '$1' for $step: only rollback takes one (--force); settings come from PLEX_MIGRATE_* variables (see --help)" ;;
    esac
    shift
  done
  check_config
  ensure_work_dir
  scratch "$CHECK_DIR"
  log "start (data dir: $DATA_DIR; work dir: $WORK_DIR$([ "$REHEARSAL" = 1 ] && echo '; rehearsal'))"
  case "$step" in
    preflight) cmd_preflight ;;
    stop) cmd_stop ;;
    authorize-sync) cmd_authorize_sync ;;
    revoke-sync) cmd_revoke_sync ;;
    rollback) cmd_rollback ;;
  esac
  log "done"
}

main "$@"
