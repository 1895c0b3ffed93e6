#!/usr/bin/env bash
# plex-migrate-source.sh: the VM side of plex-migrate (see README, "Source VM").
#
#   plex-migrate-source.sh preflight|stop|archive|serve|stop-serving|rollback
#
# Each step is idempotent, prints one JSON object on stdout when it succeeds (progress goes to
# stderr) and appends timestamped lines to the migration log. The Plex data directory is only
# ever read. Configuration comes from the environment (defaults in brackets):
#
#   PLEX_MIGRATE_WORK_DIR              work dir for archive, snapshot, log [/var/tmp/plex-migrate]
#   PLEX_MIGRATE_LOG                   migration log [$PLEX_MIGRATE_WORK_DIR/migration.log]
#   PLEX_MIGRATE_DATA_DIR              Plex data dir, the folder holding Preferences.xml
#                                      [/var/lib/plexmediaserver/Library/Application Support/Plex Media Server]
#   PLEX_MIGRATE_PLEX_SERVICE          systemd unit of Plex [plexmediaserver]
#   PLEX_MIGRATE_PLEX_PACKAGE          dpkg package of Plex [plexmediaserver]
#   PLEX_MIGRATE_PLEX_SQLITE           Plex's SQLite [/usr/lib/plexmediaserver/Plex SQLite]; when
#                                      absent: "Plex SQLite" on PATH, then sqlite3, then python3
#   PLEX_MIGRATE_TAUTULLI_SERVICE      systemd unit of Tautulli, "" for none [tautulli]
#   PLEX_MIGRATE_TAUTULLI_DB           tautulli.db, "" for none [/opt/Tautulli/tautulli.db]
#   PLEX_MIGRATE_EXCLUDES              comma-separated top-level folders left out of the archive,
#                                      from: Cache, Logs, Crash Reports, Updates, Diagnostics [""]
#   PLEX_MIGRATE_COMPRESSION           auto|zstd|pigz|gzip|none [auto: zstd, else pigz, else gzip]
#   PLEX_MIGRATE_SERVE_ADDRESS         address the archive server listens on [0.0.0.0]
#   PLEX_MIGRATE_SERVE_PORT            its TCP port [32499]
#   PLEX_MIGRATE_SERVE_LIFETIME_MINUTES  it exits after this long [240]
#   PLEX_MIGRATE_SERVE_LIFETIME_SECONDS  the same in seconds; wins when set [""]
#   PLEX_MIGRATE_SERVE_ALLOWED_CIDRS   comma-separated client networks, "" allows any [""]
#   PLEX_MIGRATE_SERVE_TOKEN           URL token (>= 22 of [A-Za-z0-9_-]); "" generates one and
#                                      prints it in serve's JSON [""]
#   PLEX_MIGRATE_SERVER_PY             path of plex-migrate-serve.py [next to this script]
#   PLEX_MIGRATE_SERVER_PY_SOURCE      its source text instead (used when this script arrives on stdin)
#   PLEX_MIGRATE_KEEP_ARCHIVE          1 keeps archive and snapshot at stop-serving [0]
#   PLEX_MIGRATE_STOP_TIMEOUT_SECONDS  how long stop waits for processes to let go [180]
#   PLEX_MIGRATE_REHEARSAL             1: no systemctl/dpkg-query (a machine without Plex); the
#                                      version comes from PLEX_MIGRATE_PLEX_VERSION or Logs/ [0]
#   PLEX_MIGRATE_PLEX_VERSION          Plex version to report instead of asking dpkg-query [""]
#
# Exit codes: 0 done; 1 failed (see stderr); 2 bad configuration or usage; 3 refused: a check
# found something that would make the migration fail (nothing was changed).
set -euo pipefail
umask 077
export LC_ALL=C

readonly EXIT_FAILED=1 EXIT_USAGE=2 EXIT_REFUSED=3
readonly ALLOWED_EXCLUDES=("Cache" "Logs" "Crash Reports" "Updates" "Diagnostics")
readonly ARCHIVE_ROOT="Library/Application Support/Plex Media Server"
readonly LIBRARY_DB="Plug-in Support/Databases/com.plexapp.plugins.library.db"
readonly BLOBS_DB="Plug-in Support/Databases/com.plexapp.plugins.library.blobs.db"

WORK_DIR=${PLEX_MIGRATE_WORK_DIR:-/var/tmp/plex-migrate}
LOG_FILE=${PLEX_MIGRATE_LOG:-$WORK_DIR/migration.log}
DATA_DIR=${PLEX_MIGRATE_DATA_DIR:-/var/lib/plexmediaserver/Library/Application Support/Plex Media Server}
PLEX_SERVICE=${PLEX_MIGRATE_PLEX_SERVICE-plexmediaserver}
PLEX_PACKAGE=${PLEX_MIGRATE_PLEX_PACKAGE:-plexmediaserver}
PLEX_SQLITE=${PLEX_MIGRATE_PLEX_SQLITE:-/usr/lib/plexmediaserver/Plex SQLite}
TAUTULLI_SERVICE=${PLEX_MIGRATE_TAUTULLI_SERVICE-tautulli}
TAUTULLI_DB=${PLEX_MIGRATE_TAUTULLI_DB-/opt/Tautulli/tautulli.db}
EXCLUDES=${PLEX_MIGRATE_EXCLUDES:-}
COMPRESSION=${PLEX_MIGRATE_COMPRESSION:-auto}
SERVE_ADDRESS=${PLEX_MIGRATE_SERVE_ADDRESS:-0.0.0.0}
SERVE_PORT=${PLEX_MIGRATE_SERVE_PORT:-32499}
SERVE_LIFETIME_MINUTES=${PLEX_MIGRATE_SERVE_LIFETIME_MINUTES:-240}
SERVE_LIFETIME_SECONDS=${PLEX_MIGRATE_SERVE_LIFETIME_SECONDS:-}
SERVE_ALLOWED_CIDRS=${PLEX_MIGRATE_SERVE_ALLOWED_CIDRS:-}
SERVE_TOKEN=${PLEX_MIGRATE_SERVE_TOKEN:-}
SERVER_PY=${PLEX_MIGRATE_SERVER_PY:-}
SERVER_PY_SOURCE=${PLEX_MIGRATE_SERVER_PY_SOURCE:-}
KEEP_ARCHIVE=${PLEX_MIGRATE_KEEP_ARCHIVE:-0}
STOP_TIMEOUT=${PLEX_MIGRATE_STOP_TIMEOUT_SECONDS:-180}
REHEARSAL=${PLEX_MIGRATE_REHEARSAL:-0}
PLEX_VERSION_OVERRIDE=${PLEX_MIGRATE_PLEX_VERSION:-}
# The token stays in this shell only; children (tar, python) never see it in their environment.
unset PLEX_MIGRATE_SERVE_TOKEN PLEX_MIGRATE_SERVER_PY_SOURCE

ARCHIVE_DIR="$WORK_DIR/archive"
SERVE_DIR="$WORK_DIR/serve"
STATE_DIR="$WORK_DIR/state"
CHECK_DIR="$WORK_DIR/check"
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
  case "$COMPRESSION" in auto | zstd | pigz | gzip | none) ;; *)
    usage_error "PLEX_MIGRATE_COMPRESSION must be auto, zstd, pigz, gzip or none, got '$COMPRESSION'" ;;
  esac
  local name allowed ok
  EXCLUDE_LIST=()
  if [ -n "$EXCLUDES" ]; then
    IFS=',' read -r -a names <<<"$EXCLUDES"
    for name in "${names[@]}"; do
      [ -n "$name" ] || continue
      ok=0
      for allowed in "${ALLOWED_EXCLUDES[@]}"; do [ "$name" = "$allowed" ] && ok=1; done
      [ "$ok" = 1 ] || usage_error "'$name' may not be excluded from the archive; allowed: ${ALLOWED_EXCLUDES[*]}"
      EXCLUDE_LIST+=("$name")
    done
  fi
  if ! is_uint "$SERVE_PORT" || [ "$SERVE_PORT" -lt 1 ] || [ "$SERVE_PORT" -gt 65535 ]; then
    usage_error "PLEX_MIGRATE_SERVE_PORT must be a TCP port, got '$SERVE_PORT'"
  fi
  if ! is_uint "$SERVE_LIFETIME_MINUTES" || [ "$SERVE_LIFETIME_MINUTES" -lt 1 ]; then
    usage_error "PLEX_MIGRATE_SERVE_LIFETIME_MINUTES must be a whole number of minutes, got '$SERVE_LIFETIME_MINUTES'"
  fi
  if [ -n "$SERVE_LIFETIME_SECONDS" ] && { ! is_uint "$SERVE_LIFETIME_SECONDS" || [ "$SERVE_LIFETIME_SECONDS" -lt 1 ]; }; then
    usage_error "PLEX_MIGRATE_SERVE_LIFETIME_SECONDS must be a whole number of seconds, got '$SERVE_LIFETIME_SECONDS'"
  fi
  if [ -n "$SERVE_TOKEN" ] && ! [[ $SERVE_TOKEN =~ ^[A-Za-z0-9_-]{22,128}$ ]]; then
    usage_error "PLEX_MIGRATE_SERVE_TOKEN must be 22-128 characters of A-Z a-z 0-9 _ - (at least 128 random bits)"
  fi
  is_uint "$STOP_TIMEOUT" || usage_error "PLEX_MIGRATE_STOP_TIMEOUT_SECONDS must be a number, got '$STOP_TIMEOUT'"
  case "$REHEARSAL" in 0 | 1) ;; *) usage_error "PLEX_MIGRATE_REHEARSAL must be 0 or 1, got '$REHEARSAL'" ;; esac
  case "$KEEP_ARCHIVE" in 0 | 1) ;; *) usage_error "PLEX_MIGRATE_KEEP_ARCHIVE must be 0 or 1, got '$KEEP_ARCHIVE'" ;; esac
  if [ -n "$PLEX_SERVICE" ] && ! [[ $PLEX_SERVICE =~ ^[A-Za-z0-9:_.@-]+$ ]]; then
    usage_error "PLEX_MIGRATE_PLEX_SERVICE is not a systemd unit name: '$PLEX_SERVICE'"
  fi
  if [ -n "$TAUTULLI_SERVICE" ] && ! [[ $TAUTULLI_SERVICE =~ ^[A-Za-z0-9:_.@-]+$ ]]; then
    usage_error "PLEX_MIGRATE_TAUTULLI_SERVICE is not a systemd unit name: '$TAUTULLI_SERVICE'"
  fi
}

# The work dir holds the archive (with the Plex token inside) and the log: root-only.
ensure_work_dir() {
  mkdir -p -- "$WORK_DIR" || die "cannot create the work dir $WORK_DIR"
  chmod 0700 -- "$WORK_DIR"
  mkdir -p -- "$(dirname -- "$LOG_FILE")"
  touch -- "$LOG_FILE" || die "cannot write the migration log $LOG_FILE"
  LOG_READY=1
}

# --- Plex facts -----------------------------------------------------------------------------

require_data_dir() {
  [ -d "$DATA_DIR" ] ||
    refuse "the Plex data dir $DATA_DIR does not exist; set plexDataDir (PLEX_MIGRATE_DATA_DIR) to the folder holding Preferences.xml"
  [ -f "$DATA_DIR/Preferences.xml" ] ||
    refuse "$DATA_DIR has no Preferences.xml, so it is not a Plex data dir; set plexDataDir (PLEX_MIGRATE_DATA_DIR) to the folder holding Preferences.xml"
  [ -f "$DATA_DIR/$LIBRARY_DB" ] ||
    refuse "no Plex library database at $DATA_DIR/$LIBRARY_DB; is plexDataDir the right folder?"
}

PLEX_VERSION=""
PLEX_VERSION_SOURCE=""
detect_plex_version() {
  if [ -n "$PLEX_VERSION_OVERRIDE" ]; then
    PLEX_VERSION=$PLEX_VERSION_OVERRIDE
    PLEX_VERSION_SOURCE="PLEX_MIGRATE_PLEX_VERSION"
  elif [ "$REHEARSAL" = 1 ]; then
    version_from_logs
  else
    command -v dpkg-query >/dev/null 2>&1 ||
      refuse "dpkg-query is missing: this is not a Debian/Ubuntu Plex install (set PLEX_MIGRATE_REHEARSAL=1 to rehearse without Plex)"
    local status=""
    status=$(dpkg-query -W -f='${db:Status-Status} ${Version}' -- "$PLEX_PACKAGE" 2>/dev/null) || status=""
    if [ "${status%% *}" != "installed" ] || [ -z "${status#* }" ]; then
      refuse "Plex Media Server is not installed: dpkg package '$PLEX_PACKAGE' not found (status: '${status:-none}'); install Plex or set PLEX_MIGRATE_PLEX_PACKAGE"
    fi
    PLEX_VERSION=${status#* }
    PLEX_VERSION_SOURCE="dpkg-query"
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

unit_found() { [ "$(systemctl show -p LoadState --value -- "$1" 2>/dev/null || true)" = loaded ]; }
unit_active() { systemctl is-active --quiet -- "$1" 2>/dev/null; }
unit_enabled_state() { systemctl is-enabled -- "$1" 2>/dev/null || true; }

# A drop-in can move the data dir (PLEX_MEDIA_SERVER_APPLICATION_SUPPORT_DIR); archiving another
# folder than the one Plex uses would move stale data, so refuse on a clear mismatch.
check_unit_data_dir() {
  local env dir
  env=$(systemctl show -p Environment --value -- "$PLEX_SERVICE" 2>/dev/null || true)
  # systemctl shows assignments with spaces quoted whole ("VAR=a b"), or with \x20 escapes.
  if [[ $env =~ \"PLEX_MEDIA_SERVER_APPLICATION_SUPPORT_DIR=([^\"]*)\" ]]; then
    dir=${BASH_REMATCH[1]}
  elif [[ $env =~ (^|[[:space:]])PLEX_MEDIA_SERVER_APPLICATION_SUPPORT_DIR=([^[:space:]]*) ]]; then
    dir=${BASH_REMATCH[2]//\\x20/ }
  else
    return 0
  fi
  dir="$dir/Plex Media Server"
  if [ -f "$dir/Preferences.xml" ] && [ "$(realpath -- "$dir")" != "$(realpath -- "$DATA_DIR")" ]; then
    refuse "$PLEX_SERVICE keeps its data in $dir (PLEX_MEDIA_SERVER_APPLICATION_SUPPORT_DIR in its unit), not $DATA_DIR; set plexDataDir to $dir"
  fi
}

# --- processes holding files ----------------------------------------------------------------

# Prints "pid name file" for every process with a file open at or under $1.
holders_of() {
  local target pattern
  target=$(realpath -m -- "$1")
  pattern=$(printf '%s' "$target" | sed 's/[][*?\\]/\\&/g')
  find /proc/[0-9]*/fd -maxdepth 1 -type l \( -lname "$pattern" -o -lname "$pattern/*" \) \
    -printf '%h %l\n' 2>/dev/null |
    while read -r fddir file; do
      local pid=${fddir#/proc/}
      pid=${pid%/fd}
      [ "$pid" = "$$" ] && continue
      printf '%s %s %s\n' "$pid" "$(tr -d '\n' <"/proc/$pid/comm" 2>/dev/null || echo '?')" "$file"
    done | sort -u -k1,1n || true
}

# Waits until no process has anything under $1 open; fails naming the holders after the timeout.
wait_released() {
  local target=$1 what=$2 deadline holders
  deadline=$((SECONDS + STOP_TIMEOUT))
  while :; do
    holders=$(holders_of "$target")
    [ -z "$holders" ] && return 0
    if [ "$SECONDS" -ge "$deadline" ]; then
      die "$what is still in use after ${STOP_TIMEOUT}s (pid name file): $(printf '%s' "$holders" | head -n 5 | tr '\n' ';') stop these processes and run stop again"
    fi
    sleep 0.5
  done
}

# --- SQLite ---------------------------------------------------------------------------------

INTEGRITY_TOOL=""
INTEGRITY_TOOL_NAME=""
pick_integrity_tool() {
  if [ -x "$PLEX_SQLITE" ]; then
    INTEGRITY_TOOL=$PLEX_SQLITE
    INTEGRITY_TOOL_NAME="Plex SQLite"
  elif command -v "Plex SQLite" >/dev/null 2>&1; then
    INTEGRITY_TOOL=$(command -v "Plex SQLite")
    INTEGRITY_TOOL_NAME="Plex SQLite"
  elif command -v sqlite3 >/dev/null 2>&1; then
    INTEGRITY_TOOL=$(command -v sqlite3)
    INTEGRITY_TOOL_NAME="sqlite3"
    note "Plex SQLite not found at $PLEX_SQLITE; checked the databases with stock sqlite3 instead (reads only, which stock SQLite handles)"
  elif command -v python3 >/dev/null 2>&1; then
    INTEGRITY_TOOL=$(command -v python3)
    INTEGRITY_TOOL_NAME="python3"
    note "neither Plex SQLite ($PLEX_SQLITE) nor sqlite3 found; checked the databases with python3's sqlite3 module"
  else
    refuse "no tool to check the Plex databases: Plex SQLite ($PLEX_SQLITE), sqlite3 and python3 are all missing"
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

# Copies a database with its -wal (never -shm) into a private dir. Only used when nothing has the
# database open, so the copy is consistent; opening it there cannot touch the original.
copy_db_set() {
  local db=$1 dest=$2
  cp --preserve=timestamps -- "$db" "$dest"
  if [ -f "$db-wal" ]; then cp --preserve=timestamps -- "$db-wal" "$dest-wal"; fi
}

# check_database DB -> DB_OK (1/0), DB_RESULT, DB_CHECKED_ON, DB_MEDIA_ROOTS (library db only)
check_database() {
  local db=$1 target result rc=0
  DB_OK=0
  DB_RESULT=""
  DB_MEDIA_ROOTS=()
  if [ -e "$db-shm" ] && [ -n "$(holders_of "$db")" ]; then
    # Live database (Plex running): a read-only connection sees a consistent snapshot and writes
    # nothing; the -shm it needs already exists.
    DB_CHECKED_ON="live database, read-only"
    target=$db
    result=$(run_sql "$target" "PRAGMA integrity_check(1);" 1 2>&1) || rc=$?
    if [ "$rc" = 0 ] && [ "$result" = ok ] && [[ $db == *library.db ]]; then
      mapfile -t DB_MEDIA_ROOTS < <(run_sql "$target" "SELECT root_path FROM section_locations ORDER BY id;" 1 2>/dev/null || true)
    fi
  else
    # Opening a WAL database, even read-only, creates -shm and may checkpoint: check a copy.
    DB_CHECKED_ON="copy"
    mkdir -p -- "$CHECK_DIR"
    target="$CHECK_DIR/$(basename -- "$db")"
    rm -f -- "$target" "$target-wal" "$target-shm"
    copy_db_set "$db" "$target"
    result=$(run_sql "$target" "PRAGMA integrity_check(1);" 2>&1) || rc=$?
    if [ "$rc" = 0 ] && [ "$result" = ok ] && [[ $db == *library.db ]]; then
      mapfile -t DB_MEDIA_ROOTS < <(run_sql "$target" "SELECT root_path FROM section_locations ORDER BY id;" 2>/dev/null || true)
    fi
    rm -f -- "$target" "$target-wal" "$target-shm"
  fi
  if [ "$rc" = 0 ] && [ "$result" = ok ]; then
    DB_OK=1
    DB_RESULT=ok
  else
    DB_RESULT=$(printf '%s' "$result" | head -n 3 | tr '\n' ' ' | cut -c1-300)
    [ -n "$DB_RESULT" ] || DB_RESULT="exit code $rc"
  fi
}

# Checks both Plex databases; sets DATABASES_OK, DATABASES_JSON, MEDIA_ROOTS, DB_PROBLEMS.
check_plex_databases() {
  local rel db first=1 size wal
  DATABASES_OK=1
  DATABASES_JSON="["
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
    log "checking $(basename -- "$db") with $INTEGRITY_TOOL_NAME"
    check_database "$db"
    size=$(stat -c %s -- "$db")
    wal=0
    [ -f "$db-wal" ] && wal=$(stat -c %s -- "$db-wal")
    if [ "$DB_OK" = 1 ]; then
      log "$(basename -- "$db"): ok ($DB_CHECKED_ON)"
      if [ "$rel" = "$LIBRARY_DB" ]; then MEDIA_ROOTS=(${DB_MEDIA_ROOTS[@]+"${DB_MEDIA_ROOTS[@]}"}); fi
    else
      DATABASES_OK=0
      DB_PROBLEMS+=("$(basename -- "$db"): integrity check failed: $DB_RESULT")
      log "$(basename -- "$db"): FAILED: $DB_RESULT"
    fi
    if [ "$first" = 1 ]; then first=0; else DATABASES_JSON+=","; fi
    DATABASES_JSON+="{\"file\":$(json_str "$rel"),\"bytes\":$size,\"walBytes\":$wal,\"ok\":$(json_bool "$DB_OK"),\"result\":$(json_str "$DB_RESULT"),\"checkedOn\":$(json_str "$DB_CHECKED_ON")}"
  done
  DATABASES_JSON+="]"
}

# --- sizes ----------------------------------------------------------------------------------

# Bytes the data dir occupies on disk (what the Plex volume must hold) and its apparent size.
measure_library() {
  LIBRARY_BYTES=$(du -s -B1 -- "$DATA_DIR/." | cut -f1)
  LIBRARY_APPARENT_BYTES=$(du -s -b -- "$DATA_DIR/." | cut -f1)
  LIBRARY_FILES=$(find "$DATA_DIR/." -type f | wc -l)
  INCLUDED_BYTES=$LIBRARY_APPARENT_BYTES
  local name
  for name in ${EXCLUDE_LIST[@]+"${EXCLUDE_LIST[@]}"}; do
    if [ -e "$DATA_DIR/$name" ]; then
      INCLUDED_BYTES=$((INCLUDED_BYTES - $(du -s -b -- "$DATA_DIR/$name" | cut -f1)))
    fi
  done
}

free_bytes_at() {
  local dir=$1
  while [ ! -d "$dir" ]; do dir=$(dirname -- "$dir"); done
  df -P -B1 -- "$dir" | awk 'NR==2 {print $4}'
}

# --- compression ----------------------------------------------------------------------------

pick_compression() {
  case "$COMPRESSION" in
    auto)
      if command -v zstd >/dev/null 2>&1; then COMPRESSOR=zstd
      elif command -v pigz >/dev/null 2>&1; then COMPRESSOR=pigz
      else COMPRESSOR=gzip; fi ;;
    *) COMPRESSOR=$COMPRESSION ;;
  esac
  if [ "$COMPRESSOR" != none ] && ! command -v "$COMPRESSOR" >/dev/null 2>&1; then
    refuse "archive compression '$COMPRESSOR' is not installed on the VM; install it or set archiveCompression to auto"
  fi
  case "$COMPRESSOR" in
    zstd) ARCHIVE_FORMAT=tar.zst ;;
    pigz | gzip) ARCHIVE_FORMAT=tar.gz ;;
    none) ARCHIVE_FORMAT=tar ;;
  esac
  ARCHIVE_NAME="plex-library.$ARCHIVE_FORMAT"
}

compress_stream() {
  case "$COMPRESSOR" in
    zstd) zstd -T0 -3 -q -c ;;
    pigz) pigz -6 -n -c ;;
    gzip) gzip -6 -n -c ;;
    none) cat ;;
  esac
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
  fi
  owner=$(stat -c '%u:%g' -- "$DATA_DIR/Preferences.xml")
  measure_library
  log "library: $LIBRARY_BYTES bytes on disk, $LIBRARY_FILES files; archive input $INCLUDED_BYTES bytes"
  check_plex_databases
  problems+=(${DB_PROBLEMS[@]+"${DB_PROBLEMS[@]}"})
  command -v python3 >/dev/null 2>&1 || problems+=("python3 is missing on the VM: it serves the archive and snapshots tautulli.db; install python3")
  tar --version 2>/dev/null | grep -q 'GNU tar' || problems+=("GNU tar is missing on the VM; install tar")
  pick_compression

  local tautulli_json=null tautulli_bytes=0 tautulli_service_found=0 tautulli_running=0
  if [ -n "$TAUTULLI_DB" ]; then
    if [ -f "$TAUTULLI_DB" ]; then
      tautulli_bytes=$(stat -c %s -- "$TAUTULLI_DB")
      [ -f "$TAUTULLI_DB-wal" ] && tautulli_bytes=$((tautulli_bytes + $(stat -c %s -- "$TAUTULLI_DB-wal")))
    else
      problems+=("tautulli.db not found at $TAUTULLI_DB: set tautulliDbPath (Docker installs keep it at /config/tautulli.db)")
    fi
    if [ "$REHEARSAL" = 0 ] && [ -n "$TAUTULLI_SERVICE" ]; then
      if unit_found "$TAUTULLI_SERVICE"; then
        tautulli_service_found=1
        if unit_active "$TAUTULLI_SERVICE"; then tautulli_running=1; fi
      else
        note "systemd unit $TAUTULLI_SERVICE not found: Tautulli is not stopped by plex-migrate; its database is copied with SQLite's online backup"
      fi
    fi
    tautulli_json="{\"path\":$(json_str "$TAUTULLI_DB"),\"found\":$(json_bool "$([ -f "$TAUTULLI_DB" ] && echo 1 || echo 0)"),\"bytes\":$tautulli_bytes,\"service\":$(json_str "$TAUTULLI_SERVICE"),\"serviceFound\":$(json_bool "$tautulli_service_found"),\"running\":$(json_bool "$tautulli_running")}"
  fi

  # Space: the archive (at worst as large as its input), the snapshot, and the largest database
  # copied for the integrity check; a previous archive would be replaced, so it counts as free.
  free=$(free_bytes_at "$WORK_DIR")
  for f in "$ARCHIVE_DIR"/plex-library.* "$ARCHIVE_DIR"/tautulli.db; do
    [ -f "$f" ] && reclaimable=$((reclaimable + $(stat -c %s -- "$f")))
  done
  local largest_db
  largest_db=$(stat -c %s -- "$DATA_DIR/$LIBRARY_DB")
  required=$((INCLUDED_BYTES + tautulli_bytes + 64 * 1024 * 1024))
  [ $((largest_db * 2)) -gt "$required" ] && required=$((largest_db * 2))
  if [ $((free + reclaimable)) -lt "$required" ]; then
    problems+=("not enough free disk for the archive in $WORK_DIR: need $required bytes, have $((free + reclaimable)); free space there, set vmWorkDir to a bigger disk, or exclude Cache (archiveExcludes)")
  fi

  local ok=1
  [ "${#problems[@]}" -eq 0 ] || ok=0
  printf '{"step":"preflight","ok":%s,"rehearsal":%s,"plexVersion":%s,"plexVersionSource":%s,"plexService":%s,"plexServiceFound":%s,"plexRunning":%s,"dataDir":%s,"dataDirOwner":%s,"libraryBytes":%s,"libraryApparentBytes":%s,"libraryFiles":%s,"archiveInputBytes":%s,"excludes":%s,"compression":%s,"archiveFormat":%s,"workDir":%s,"freeBytes":%s,"requiredFreeBytes":%s,"databasesOk":%s,"integrityTool":%s,"integrityToolPath":%s,"databases":%s,"mediaRoots":%s,"tautulli":%s,"notes":%s,"problems":%s}\n' \
    "$(json_bool "$ok")" "$(json_bool "$REHEARSAL")" "$(json_str "$PLEX_VERSION")" "$(json_str "$PLEX_VERSION_SOURCE")" \
    "$(json_str "$PLEX_SERVICE")" "$(json_bool "$plex_found")" "$(json_bool "$plex_running")" \
    "$(json_str "$DATA_DIR")" "$(json_str "$owner")" "$LIBRARY_BYTES" "$LIBRARY_APPARENT_BYTES" "$LIBRARY_FILES" \
    "$INCLUDED_BYTES" "$(json_list ${EXCLUDE_LIST[@]+"${EXCLUDE_LIST[@]}"})" "$(json_str "$COMPRESSOR")" \
    "$(json_str "$ARCHIVE_FORMAT")" "$(json_str "$WORK_DIR")" "$free" "$required" "$(json_bool "$DATABASES_OK")" \
    "$(json_str "$INTEGRITY_TOOL_NAME")" "$(json_str "$INTEGRITY_TOOL")" "$DATABASES_JSON" \
    "$(json_list ${MEDIA_ROOTS[@]+"${MEDIA_ROOTS[@]}"})" "$tautulli_json" "$(json_notes)" \
    "$(json_list ${problems[@]+"${problems[@]}"})"
  if [ "$ok" != 1 ]; then
    local p
    for p in "${problems[@]}"; do log "problem: $p"; done
    refuse "preflight found ${#problems[@]} problem(s); nothing was changed"
  fi
  log "preflight ok"
}

# stop_unit UNIT -> prints a JSON object for it.
stop_unit() {
  local unit=$1 was_active=0 was_enabled state_file
  state_file="$STATE_DIR/$unit.enabled"
  if ! unit_found "$unit"; then
    printf '{"name":%s,"found":false}' "$(json_str "$unit")"
    return 0
  fi
  unit_active "$unit" && was_active=1
  was_enabled=$(unit_enabled_state "$unit")
  # Remember how it was before the first stop, so rollback restores exactly that.
  mkdir -p -- "$STATE_DIR"
  [ -f "$state_file" ] || printf '%s\n' "$was_enabled" >"$state_file"
  log "stopping $unit (was $([ "$was_active" = 1 ] && echo active || echo inactive), $was_enabled)"
  systemctl --no-ask-password stop -- "$unit" >&2 || die "systemctl stop $unit failed"
  # Disabled so a reboot of the VM does not bring up a second server with the same identity.
  if [ "$was_enabled" = enabled ]; then
    systemctl --no-ask-password disable -- "$unit" >&2 2>/dev/null || die "systemctl disable $unit failed"
  fi
  printf '{"name":%s,"found":true,"wasActive":%s,"wasEnabled":%s}' "$(json_str "$unit")" \
    "$(json_bool "$was_active")" "$(json_str "$was_enabled")"
}

cmd_stop() {
  local units_json="[" first=1 unit entry
  require_data_dir
  if [ "$REHEARSAL" = 1 ]; then
    note "rehearsal: no services stopped"
  else
    command -v systemctl >/dev/null 2>&1 || refuse "systemctl is missing; plex-migrate expects a systemd VM (or PLEX_MIGRATE_REHEARSAL=1)"
    unit_found "$PLEX_SERVICE" || refuse "systemd unit $PLEX_SERVICE not found: set plexService to the unit that runs Plex"
    for unit in "$TAUTULLI_SERVICE" "$PLEX_SERVICE"; do
      [ -n "$unit" ] || continue
      entry=$(stop_unit "$unit")
      if [ "$first" = 1 ]; then first=0; else units_json+=","; fi
      units_json+=$entry
    done
  fi
  units_json+="]"
  log "waiting until no process has files open in the Plex data dir"
  wait_released "$DATA_DIR" "the Plex data dir"
  if [ -n "$TAUTULLI_DB" ] && [ -f "$TAUTULLI_DB" ] && { [ "$REHEARSAL" = 1 ] || unit_found "$TAUTULLI_SERVICE"; }; then
    wait_released "$TAUTULLI_DB" "tautulli.db"
  fi
  check_plex_databases
  if [ "$DATABASES_OK" != 1 ]; then
    die "the Plex databases failed the integrity check after the stop: ${DB_PROBLEMS[*]}. Plex stays stopped; repair them (e.g. PlexDBRepair) or run rollback to start Plex again"
  fi
  printf '{"step":"stop","stoppedAt":%s,"rehearsal":%s,"services":%s,"databasesOk":true,"integrityTool":%s,"databases":%s,"notes":%s}\n' \
    "$(json_str "$(now_iso)")" "$(json_bool "$REHEARSAL")" "$units_json" "$(json_str "$INTEGRITY_TOOL_NAME")" \
    "$DATABASES_JSON" "$(json_notes)"
  log "stopped; databases ok"
}

# Consistent copy of tautulli.db through SQLite's online backup API (includes committed WAL
# content). A live database (-shm present, opened by Tautulli) is read in place read-only;
# otherwise its files are copied first so that opening it cannot create or checkpoint anything
# next to the original.
snapshot_tautulli() {
  local dest=$1 scratch="$CHECK_DIR/tautulli-source.db" source mode
  mkdir -p -- "$CHECK_DIR"
  rm -f -- "$dest" "$scratch" "$scratch-wal" "$scratch-shm"
  if [ -e "$TAUTULLI_DB-shm" ] && [ -n "$(holders_of "$TAUTULLI_DB")" ]; then
    source=$TAUTULLI_DB
    mode=ro
  else
    copy_db_set "$TAUTULLI_DB" "$scratch"
    source=$scratch
    mode=rw
  fi
  python3 - "$source" "$dest" "$mode" <<'PY' || die "the Tautulli snapshot failed (see above)"
import sqlite3, sys, urllib.parse
source, dest, mode = sys.argv[1], sys.argv[2], sys.argv[3]
uri = "file:" + urllib.parse.quote(source) + ("?mode=ro" if mode == "ro" else "")
src = sqlite3.connect(uri, uri=True)
dst = sqlite3.connect(dest)
try:
    src.backup(dst)
    dst.execute("PRAGMA journal_mode=DELETE")
    result = dst.execute("PRAGMA quick_check").fetchone()[0]
    if result != "ok":
        sys.exit("tautulli.db snapshot failed quick_check: " + result)
finally:
    dst.close()
    src.close()
PY
  rm -f -- "$scratch" "$scratch-wal" "$scratch-shm"
}

cmd_archive() {
  local started partial sha bytes holders exclude_args=() name t_json=null
  require_data_dir
  pick_compression
  holders=$(holders_of "$DATA_DIR")
  [ -z "$holders" ] ||
    refuse "Plex is still running (pid name file: $(printf '%s' "$holders" | head -n 3 | tr '\n' ';')); run the stop step first"
  mkdir -p -- "$ARCHIVE_DIR"
  chmod 0700 -- "$ARCHIVE_DIR"
  rm -f -- "$ARCHIVE_DIR"/plex-library.* "$ARCHIVE_DIR"/tautulli.db "$ARCHIVE_DIR"/tautulli.db.sha256

  # Parent entries "Library" and "Library/Application Support" carry the data dir's owner, mode
  # and mtime, so extraction in /config needs no guessing whatever plexDataDir is on the VM.
  local stage="$WORK_DIR/stage"
  rm -rf -- "$stage"
  mkdir -p -- "$stage/Library/Application Support"
  chown --reference="$DATA_DIR" -- "$stage/Library" "$stage/Library/Application Support"
  chmod --reference="$DATA_DIR" -- "$stage/Library" "$stage/Library/Application Support"
  touch -r "$DATA_DIR" -- "$stage/Library/Application Support" "$stage/Library"

  for name in ${EXCLUDE_LIST[@]+"${EXCLUDE_LIST[@]}"}; do exclude_args+=("--exclude=./$name"); done
  partial="$ARCHIVE_DIR/$ARCHIVE_NAME.partial"
  log "archiving $DATA_DIR -> $ARCHIVE_DIR/$ARCHIVE_NAME ($COMPRESSOR; excluded: ${EXCLUDE_LIST[*]:-nothing})"
  started=$SECONDS
  # One pass: tar streams into the compressor, tee writes the file and feeds sha256sum.
  sha=$(
    tar --create --format=gnu --numeric-owner --sort=name \
      --anchored --no-wildcards ${exclude_args[@]+"${exclude_args[@]}"} \
      --transform="flags=r;s,^\\./,$ARCHIVE_ROOT/,;s,^\\.\$,$ARCHIVE_ROOT," \
      --no-recursion -C "$stage" "Library" "Library/Application Support" \
      --recursion -C "$DATA_DIR" . |
      compress_stream | tee -- "$partial" | sha256sum | cut -d' ' -f1
  ) || {
    rm -f -- "$partial"
    rm -rf -- "$stage"
    die "archiving failed (a file changed or could not be read: is Plex really stopped?)"
  }
  rm -rf -- "$stage"
  mv -f -- "$partial" "$ARCHIVE_DIR/$ARCHIVE_NAME"
  bytes=$(stat -c %s -- "$ARCHIVE_DIR/$ARCHIVE_NAME")
  printf '%s  %s\n' "$sha" "$ARCHIVE_NAME" >"$ARCHIVE_DIR/$ARCHIVE_NAME.sha256"
  log "archive done: $bytes bytes, sha256 $sha, $((SECONDS - started))s"

  if [ -n "$TAUTULLI_DB" ]; then
    [ -f "$TAUTULLI_DB" ] ||
      refuse "tautulli.db not found at $TAUTULLI_DB: set tautulliDbPath (Docker installs keep it at /config/tautulli.db)"
    command -v python3 >/dev/null 2>&1 || refuse "python3 is missing on the VM (needed for the Tautulli snapshot)"
    log "snapshotting $TAUTULLI_DB with SQLite's backup API"
    snapshot_tautulli "$ARCHIVE_DIR/tautulli.db"
    local t_sha t_bytes
    t_sha=$(sha256sum -- "$ARCHIVE_DIR/tautulli.db" | cut -d' ' -f1)
    t_bytes=$(stat -c %s -- "$ARCHIVE_DIR/tautulli.db")
    printf '%s  %s\n' "$t_sha" tautulli.db >"$ARCHIVE_DIR/tautulli.db.sha256"
    log "tautulli snapshot: $t_bytes bytes, sha256 $t_sha"
    t_json="{\"file\":$(json_str "$ARCHIVE_DIR/tautulli.db"),\"name\":\"tautulli.db\",\"source\":$(json_str "$TAUTULLI_DB"),\"sha256\":\"$t_sha\",\"bytes\":$t_bytes}"
  fi
  printf '{"step":"archive","archivedAt":%s,"archive":{"file":%s,"name":%s,"format":%s,"compression":%s,"sha256":"%s","bytes":%s,"excludes":%s,"seconds":%s},"tautulli":%s,"notes":%s}\n' \
    "$(json_str "$(now_iso)")" "$(json_str "$ARCHIVE_DIR/$ARCHIVE_NAME")" "$(json_str "$ARCHIVE_NAME")" \
    "$(json_str "$ARCHIVE_FORMAT")" "$(json_str "$COMPRESSOR")" "$sha" "$bytes" \
    "$(json_list ${EXCLUDE_LIST[@]+"${EXCLUDE_LIST[@]}"})" "$((SECONDS - started))" "$t_json" "$(json_notes)"
}

# The running server's pid, if the pid file names a live plex-migrate server.
server_pid() {
  local pid
  [ -f "$SERVE_DIR/server.pid" ] || return 1
  pid=$(cat -- "$SERVE_DIR/server.pid")
  is_uint "$pid" || return 1
  [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q 'plex-migrate-serve' || return 1
  printf '%s' "$pid"
}

# Alive and not a zombie (an exited server waits for init to reap it).
process_alive() {
  local state
  state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1) || return 1
  [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}

stop_server() {
  local pid i
  pid=$(server_pid) || {
    rm -f -- "$SERVE_DIR/server.pid"
    return 1
  }
  log "stopping the archive server (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    process_alive "$pid" || break
    sleep 0.1
  done
  if process_alive "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
  rm -f -- "$SERVE_DIR/server.pid"
  return 0
}

server_source() {
  if [ -n "$SERVER_PY_SOURCE" ]; then
    printf '%s\n' "$SERVER_PY_SOURCE"
    return 0
  fi
  local candidate=$SERVER_PY
  if [ -z "$candidate" ] && [ -n "${BASH_SOURCE[0]:-}" ] && [ -f "${BASH_SOURCE[0]}" ]; then
    candidate="$(dirname -- "${BASH_SOURCE[0]}")/plex-migrate-serve.py"
  fi
  if [ -z "$candidate" ] || [ ! -f "$candidate" ]; then
    usage_error "plex-migrate-serve.py not found; put it next to this script or set PLEX_MIGRATE_SERVER_PY"
  fi
  cat -- "$candidate"
}

cmd_serve() {
  local archive="" f lifetime token generated=0 pid i expires
  for f in "$ARCHIVE_DIR"/plex-library.tar.zst "$ARCHIVE_DIR"/plex-library.tar.gz "$ARCHIVE_DIR"/plex-library.tar; do
    [ -f "$f" ] && archive=$f
  done
  [ -n "$archive" ] ||
    refuse "no archive in $ARCHIVE_DIR: run the archive step first (stop-serving removes it after a finished move unless keepArchive is set)"
  command -v python3 >/dev/null 2>&1 || refuse "python3 is missing on the VM; it runs the archive server"
  lifetime=${SERVE_LIFETIME_SECONDS:-$((SERVE_LIFETIME_MINUTES * 60))}
  token=$SERVE_TOKEN
  if [ -z "$token" ]; then
    token=$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')
    generated=1
  fi
  stop_server || true
  mkdir -p -- "$SERVE_DIR"
  chmod 0700 -- "$SERVE_DIR"
  server_source >"$SERVE_DIR/plex-migrate-serve.py"
  (umask 077 && printf '%s\n' "$token" >"$SERVE_DIR/token")
  rm -f -- "$SERVE_DIR/ready"

  local file_args=(--file "$(basename -- "$archive")=$archive")
  local files_json
  files_json="[{\"name\":$(json_str "$(basename -- "$archive")"),\"sha256\":\"$(cut -d' ' -f1 "$archive.sha256")\",\"bytes\":$(stat -c %s -- "$archive")}"
  if [ -f "$ARCHIVE_DIR/tautulli.db" ]; then
    file_args+=(--file "tautulli.db=$ARCHIVE_DIR/tautulli.db")
    files_json+=",{\"name\":\"tautulli.db\",\"sha256\":\"$(cut -d' ' -f1 "$ARCHIVE_DIR/tautulli.db.sha256")\",\"bytes\":$(stat -c %s -- "$ARCHIVE_DIR/tautulli.db")}"
  fi
  files_json+="]"
  local cidr_args=() cidrs=() cidr
  if [ -n "$SERVE_ALLOWED_CIDRS" ]; then
    IFS=',' read -r -a cidrs <<<"$SERVE_ALLOWED_CIDRS"
    for cidr in "${cidrs[@]}"; do [ -n "$cidr" ] && cidr_args+=(--allow "$cidr"); done
  fi

  log "starting the archive server on $SERVE_ADDRESS:$SERVE_PORT for ${lifetime}s (allowed: ${SERVE_ALLOWED_CIDRS:-any client with the token})"
  # setsid + all three streams redirected: the server outlives this SSH session without holding it.
  setsid python3 "$SERVE_DIR/plex-migrate-serve.py" --bind "$SERVE_ADDRESS" --port "$SERVE_PORT" \
    --token-file "$SERVE_DIR/token" --lifetime-seconds "$lifetime" --ready-file "$SERVE_DIR/ready" \
    --pid-file "$SERVE_DIR/server.pid" --log "$LOG_FILE" "${file_args[@]}" ${cidr_args[@]+"${cidr_args[@]}"} \
    </dev/null >>"$SERVE_DIR/server.out" 2>&1 &
  pid=$!
  printf '%s\n' "$pid" >"$SERVE_DIR/server.pid"
  for ((i = 0; i < 100; i++)); do
    [ -f "$SERVE_DIR/ready" ] && break
    if ! kill -0 "$pid" 2>/dev/null; then
      rm -f -- "$SERVE_DIR/server.pid"
      die "the archive server did not start: $(tail -n 3 -- "$SERVE_DIR/server.out" | tr '\n' ' ')"
    fi
    sleep 0.1
  done
  [ -f "$SERVE_DIR/ready" ] || die "the archive server did not report ready within 10s; see $SERVE_DIR/server.out"
  expires=$(date -u -d "@$(($(date +%s) + lifetime))" '+%Y-%m-%dT%H:%M:%SZ')
  log "serving $(basename -- "$archive") until $expires (pid $pid)"
  local token_json=""
  if [ "$generated" = 1 ]; then
    token_json=",\"token\":$(json_str "$token"),\"paths\":$(json_list "/$token/$(basename -- "$archive")")"
    log "generated a token; it is in this step's JSON output only"
  fi
  printf '{"step":"serve","pid":%s,"address":%s,"port":%s,"lifetimeSeconds":%s,"expiresAt":%s,"allowedCidrs":%s,"files":%s%s}\n' \
    "$pid" "$(json_str "$SERVE_ADDRESS")" "$SERVE_PORT" "$lifetime" "$(json_str "$expires")" \
    "$(json_list ${cidrs[@]+"${cidrs[@]}"})" "$files_json" "$token_json"
}

cmd_stop_serving() {
  local was_running=0 removed=()
  if stop_server; then was_running=1; else log "no archive server running"; fi
  rm -rf -- "$SERVE_DIR" "$CHECK_DIR" "$WORK_DIR/stage"
  if [ "$KEEP_ARCHIVE" = 1 ]; then
    log "keeping $ARCHIVE_DIR (keepArchive); it holds Preferences.xml with the Plex token: delete it when done"
  elif [ -d "$ARCHIVE_DIR" ]; then
    local f
    for f in "$ARCHIVE_DIR"/*; do [ -e "$f" ] && removed+=("$f"); done
    rm -rf -- "$ARCHIVE_DIR"
    log "removed the archive and snapshot (${#removed[@]} files)"
  fi
  printf '{"step":"stop-serving","wasRunning":%s,"keptArchive":%s,"removed":%s}\n' \
    "$(json_bool "$was_running")" "$(json_bool "$KEEP_ARCHIVE")" "$(json_list ${removed[@]+"${removed[@]}"})"
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
      *.gz) gzip -dc -- "$candidate" >"$SYNC_DIR/rrsync" || die "cannot unpack $candidate" ;;
      *) if [ -x "$candidate" ]; then RRSYNC=$candidate; else cp -- "$candidate" "$SYNC_DIR/rrsync"; fi ;;
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
      { print }' "$file" >"$tmp"
  else
    : >"$tmp"
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

start_unit() {
  local unit=$1 state_file="$STATE_DIR/$1.enabled" was_enabled="" i
  if ! unit_found "$unit"; then
    printf '{"name":%s,"found":false}' "$(json_str "$unit")"
    return 0
  fi
  [ -f "$state_file" ] && was_enabled=$(cat -- "$state_file")
  if [ "$was_enabled" = enabled ]; then
    systemctl --no-ask-password enable -- "$unit" >&2 2>/dev/null || die "systemctl enable $unit failed"
  fi
  log "starting $unit"
  systemctl --no-ask-password start -- "$unit" >&2 || die "systemctl start $unit failed; see journalctl -u $unit"
  for ((i = 0; i < 60; i++)); do
    unit_active "$unit" && break
    sleep 0.5
  done
  unit_active "$unit" || die "$unit did not become active within 30s; see journalctl -u $unit"
  rm -f -- "$state_file"
  printf '{"name":%s,"found":true,"active":true,"enabled":%s}' "$(json_str "$unit")" "$(json_str "$(unit_enabled_state "$unit")")"
}

cmd_rollback() {
  local units_json="[" first=1 unit entry
  if [ "$REHEARSAL" = 1 ]; then
    note "rehearsal: no services started"
  else
    for unit in "$PLEX_SERVICE" "$TAUTULLI_SERVICE"; do
      [ -n "$unit" ] || continue
      entry=$(start_unit "$unit")
      if [ "$first" = 1 ]; then first=0; else units_json+=","; fi
      units_json+=$entry
    done
  fi
  units_json+="]"
  printf '{"step":"rollback","startedAt":%s,"rehearsal":%s,"services":%s,"notes":%s}\n' \
    "$(json_str "$(now_iso)")" "$(json_bool "$REHEARSAL")" "$units_json" "$(json_notes)"
  log "rollback done: Plex runs on the VM again"
}

main() {
  local step=${1:-}
  case "$step" in
    preflight | stop | archive | serve | stop-serving | authorize-sync | revoke-sync | rollback) ;;
    -h | --help | help)
      sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
      return 0
      ;;
    *)
      STEP=plex-migrate-source
      usage_error "usage: plex-migrate-source.sh preflight|stop|archive|serve|stop-serving|rollback (got '${step}')"
      ;;
  esac
  STEP=$step
  check_config
  ensure_work_dir
  log "start (data dir: $DATA_DIR; work dir: $WORK_DIR$([ "$REHEARSAL" = 1 ] && echo '; rehearsal'))"
  case "$step" in
    preflight) cmd_preflight ;;
    stop) cmd_stop ;;
    archive) cmd_archive ;;
    serve) cmd_serve ;;
    stop-serving) cmd_stop_serving ;;
    authorize-sync) cmd_authorize_sync ;;
    revoke-sync) cmd_revoke_sync ;;
    rollback) cmd_rollback ;;
  esac
  log "done"
}

main "$@"
