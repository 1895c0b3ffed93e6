#!/bin/sh
# plex-init.sh: imports the Plex data directory archived on the VM into the config volume of the
# plex-media-server chart. It runs as the chart's init container (`initContainer.script`, executed
# as /init/init.sh on every pod start) and, for tests and rehearsals, on any Linux host with
# PLEX_CONFIG_DIR pointed at a directory.
#
# What it guarantees:
#   * Idempotent: once an import completed, the marker $PLEX_CONFIG_DIR/.plex-migrate/import-complete
#     (written last) makes every later run a no-op, even if the archive server is gone.
#   * $PLEX_CONFIG_DIR/Library is either absent or complete: the archive is extracted into a staging
#     directory on the same volume and renamed into place only after its sha256 matched.
#   * No copy of the archive on the volume: the download is streamed (curl, resumed with HTTP Range
#     after a broken connection) through sha256sum into tar.
#   * Refuses to start when the volume lacks space, and cleans the staging directory on any failure.
#   * Files end up owned by the image's plex user (PLEX_UID:PLEX_GID), so the image's
#     CHANGE_CONFIG_DIR_OWNERSHIP step finds Preferences.xml owned by plex and leaves the tree alone.
#   * Never overwrites a Library it did not create; never logs the archive URL (it holds a token).
#
# Image: the chart's alpine:3.22 (POSIX sh = busybox ash). It needs curl, GNU tar and, for tar.zst,
# zstd; when they are missing and `apk` exists it installs them (`apk add --no-cache curl tar zstd`,
# which needs the Alpine package mirror). For a cluster without outbound access, use an init image
# that already has them (config plexInitImage) or set PLEX_INIT_INSTALL_TOOLS=never to fail fast.
# Accepted archive formats: tar.zst, tar.gz, tar.
#
# Settings (environment variables; the rendered chart script fills them in below, because the
# chart passes no environment to the init container):
#   PLEX_CONFIG_DIR           config volume (default /config)
#   PLEX_ARCHIVE_URL          archive URL (secret); if unset it is read from PLEX_ARCHIVE_URL_FILE
#   PLEX_ARCHIVE_URL_FILE     file holding the URL (default /plex-migrate/archive-url, a Secret)
#   PLEX_ARCHIVE_SHA256       sha256 of the archive bytes (required)
#   PLEX_ARCHIVE_BYTES        length of the archive in bytes (required)
#   PLEX_ARCHIVE_FORMAT       tar.zst | tar.gz | tar (default: the URL's suffix)
#   PLEX_LIBRARY_BYTES        bytes the extracted library needs (default: archive bytes x
#                             PLEX_INIT_EXPANSION)
#   PLEX_INIT_EXPANSION       expansion estimate when PLEX_LIBRARY_BYTES is unset (default 3 for
#                             compressed archives, 1 for tar)
#   PLEX_UID / PLEX_GID       owner of the imported files (default 1000 / 1000, pms-docker's plex)
#   PLEX_INIT_RETRIES         failed attempts in a row, without progress, before giving up (default 10)
#   PLEX_INIT_RETRY_DELAY     first wait between attempts in seconds, doubled up to 30 (default 2)
#   PLEX_INIT_STALL_SECONDS   an attempt that moves < 1 KiB/s this long is retried (default 60)
#   PLEX_INIT_CONNECT_TIMEOUT seconds to wait for a connection (default 20)
#   PLEX_INIT_MAX_RATE        optional bandwidth cap passed to curl --limit-rate (e.g. 50M)
#   PLEX_INIT_INSTALL_TOOLS   auto (apk add what is missing) | never (default auto)
#   PLEX_INIT_TMPDIR          scratch for FIFOs, not on the volume (default $TMPDIR or /tmp)
#
# Exit codes:
#   0 imported, or already imported earlier (marker present)
#   2 bad settings (missing URL, malformed sha256/bytes/format, config dir unusable)
#   3 required tools missing and not installable
#   4 not enough free space on the volume (checked before the download, or hit while extracting)
#   5 download failed (retries exhausted, HTTP error, server without Range support)
#   6 the bytes received do not match PLEX_ARCHIVE_SHA256 / PLEX_ARCHIVE_BYTES
#   7 decompression or extraction failed
#   8 $PLEX_CONFIG_DIR/Library exists but this script did not create it; left untouched
#   9 the archive does not hold Library/Application Support/Plex Media Server
#  10 interrupted (SIGINT/SIGTERM)
set -eu

# @plex-init-settings-begin (replaced by lib/plex/init-script.ts when rendered for the chart)
# @plex-init-settings-end

CONFIG_DIR=${PLEX_CONFIG_DIR:-/config}
STATE_DIR=$CONFIG_DIR/.plex-migrate
MARKER=$STATE_DIR/import-complete
STAGING=$STATE_DIR/staging
LOG_FILE=$STATE_DIR/import.log
LIBRARY=$CONFIG_DIR/Library
PLEX_DATA_RELATIVE="Library/Application Support/Plex Media Server"

EXIT_SETTINGS=2
EXIT_TOOLS=3
EXIT_SPACE=4
EXIT_DOWNLOAD=5
EXIT_CHECKSUM=6
EXIT_EXTRACT=7
EXIT_FOREIGN_LIBRARY=8
EXIT_LAYOUT=9
EXIT_INTERRUPTED=10

archive_url=""
work_dir=""
renamed=no
log_to_volume=no

log() {
  line="$(date -u '+%Y-%m-%dT%H:%M:%SZ') plex-init: $*"
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

# Replaces the secret URL (and its path, which holds the token) in text read from stdin.
redact() {
  if [ -z "$archive_url" ]; then
    cat
    return
  fi
  secret_path=${archive_url#*://*/}
  awk -v url="$archive_url" -v path="$secret_path" '
    function hide(s, t,   i) {
      if (t == "") return s
      while ((i = index(s, t)) > 0) s = substr(s, 1, i - 1) "<hidden>" substr(s, i + length(t))
      return s
    }
    { print hide(hide($0, url), path) }'
}

# "http://host:port/<token>/plex-library.tar.zst" -> "http://host:port/<hidden>/plex-library.tar.zst"
display_url() {
  printf '%s\n' "$archive_url" | sed -E 's#^([a-z]+://[^/]+)/.*/([^/]*)$#\1/<hidden>/\2#'
}

on_exit() {
  status=$?
  trap - EXIT INT TERM
  if [ -n "$work_dir" ]; then
    if [ -n "${pipeline_pid:-}" ]; then
      # Interrupted mid-transfer: end the download so the pipeline drains, then wait for it.
      kill "$(cat "$work_dir/curl.pid" 2>/dev/null)" 2>/dev/null || true
      : >"$work_dir/abort"
      wait "$pipeline_pid" 2>/dev/null || true
    fi
    for pid in ${helper_pids:-}; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$work_dir"
  fi
  if [ "$status" -ne 0 ] && [ "$renamed" = no ] && [ -d "$STAGING" ]; then
    log "removing the staging directory after the failure"
    rm -rf "$STAGING" || log "WARNING: could not remove $STAGING"
  fi
  exit "$status"
}

on_signal() {
  log "interrupted"
  exit "$EXIT_INTERRUPTED"
}

is_uint() {
  case $1 in '' | *[!0-9]*) return 1 ;; *) return 0 ;; esac
}

is_positive() {
  is_uint "$1" && [ "$1" -gt 0 ]
}

# --- settings ----------------------------------------------------------------------------------

read_settings() {
  [ -d "$CONFIG_DIR" ] || die "$EXIT_SETTINGS" "config directory $CONFIG_DIR does not exist (set PLEX_CONFIG_DIR)"

  if [ -n "${PLEX_ARCHIVE_URL:-}" ]; then
    archive_url=$PLEX_ARCHIVE_URL
  else
    url_file=${PLEX_ARCHIVE_URL_FILE:-/plex-migrate/archive-url}
    [ -r "$url_file" ] || die "$EXIT_SETTINGS" "no archive URL: set PLEX_ARCHIVE_URL or mount the URL Secret at $url_file"
    archive_url=$(tr -d '\r\n' <"$url_file")
  fi
  case $archive_url in
    http://?* | https://?*) ;;
    *) archive_url="" && die "$EXIT_SETTINGS" "the archive URL must start with http:// or https://" ;;
  esac
  case $archive_url in
    *[!A-Za-z0-9._~:/?#@!\$\&\'\(\)*+,\;=%-]*)
      archive_url="" && die "$EXIT_SETTINGS" "the archive URL holds characters that are not allowed in a URL"
      ;;
  esac

  archive_sha256=$(printf '%s' "${PLEX_ARCHIVE_SHA256:-}" | tr 'A-F' 'a-f')
  case $archive_sha256 in
    *[!0-9a-f]* | '') die "$EXIT_SETTINGS" "PLEX_ARCHIVE_SHA256 must be 64 hex digits" ;;
  esac
  [ "${#archive_sha256}" -eq 64 ] || die "$EXIT_SETTINGS" "PLEX_ARCHIVE_SHA256 must be 64 hex digits"

  archive_bytes=${PLEX_ARCHIVE_BYTES:-}
  is_positive "$archive_bytes" ||
    die "$EXIT_SETTINGS" "PLEX_ARCHIVE_BYTES must be the archive length in bytes (a positive integer)"

  archive_format=${PLEX_ARCHIVE_FORMAT:-}
  if [ -z "$archive_format" ]; then
    case $archive_url in
      *.tar.zst) archive_format=tar.zst ;;
      *.tar.gz | *.tgz) archive_format=tar.gz ;;
      *.tar) archive_format=tar ;;
      *) die "$EXIT_SETTINGS" "cannot tell the archive format from the URL: set PLEX_ARCHIVE_FORMAT (tar.zst, tar.gz or tar)" ;;
    esac
  fi
  case $archive_format in
    tar.zst | tar.gz) default_expansion=3 ;;
    tar) default_expansion=1 ;;
    *) die "$EXIT_SETTINGS" "PLEX_ARCHIVE_FORMAT \"$archive_format\" is not one of tar.zst, tar.gz, tar" ;;
  esac

  expansion=${PLEX_INIT_EXPANSION:-$default_expansion}
  is_positive "$expansion" || die "$EXIT_SETTINGS" "PLEX_INIT_EXPANSION must be a positive integer"
  library_bytes=${PLEX_LIBRARY_BYTES:-}
  if [ -n "$library_bytes" ]; then
    is_uint "$library_bytes" || die "$EXIT_SETTINGS" "PLEX_LIBRARY_BYTES must be a byte count"
  else
    library_bytes=$((archive_bytes * expansion))
  fi

  plex_uid=${PLEX_UID:-1000}
  plex_gid=${PLEX_GID:-1000}
  is_uint "$plex_uid" || die "$EXIT_SETTINGS" "PLEX_UID must be a numeric uid"
  is_uint "$plex_gid" || die "$EXIT_SETTINGS" "PLEX_GID must be a numeric gid"

  retries=${PLEX_INIT_RETRIES:-10}
  retry_delay=${PLEX_INIT_RETRY_DELAY:-2}
  stall_seconds=${PLEX_INIT_STALL_SECONDS:-60}
  connect_timeout=${PLEX_INIT_CONNECT_TIMEOUT:-20}
  for setting in "PLEX_INIT_RETRIES=$retries" "PLEX_INIT_RETRY_DELAY=$retry_delay" \
    "PLEX_INIT_STALL_SECONDS=$stall_seconds" "PLEX_INIT_CONNECT_TIMEOUT=$connect_timeout"; do
    is_uint "${setting#*=}" || die "$EXIT_SETTINGS" "${setting%%=*} must be a whole number of seconds or attempts"
  done
  max_rate=${PLEX_INIT_MAX_RATE:-}
  case $max_rate in
    '' | [0-9]* ) ;;
    *) die "$EXIT_SETTINGS" "PLEX_INIT_MAX_RATE must look like 50M (bytes per second, curl --limit-rate)" ;;
  esac
  case $max_rate in *[!0-9kKmMgG]*) die "$EXIT_SETTINGS" "PLEX_INIT_MAX_RATE must look like 50M" ;; esac
  install_tools=${PLEX_INIT_INSTALL_TOOLS:-auto}
  case $install_tools in auto | never) ;; *) die "$EXIT_SETTINGS" "PLEX_INIT_INSTALL_TOOLS must be auto or never" ;; esac
}

# --- tools -------------------------------------------------------------------------------------

has() { command -v "$1" >/dev/null 2>&1; }

gnu_tar() { tar --version 2>/dev/null | grep -q 'GNU tar'; }

missing_tools() {
  missing=""
  has curl || missing="$missing curl"
  gnu_tar || missing="$missing tar"
  case $archive_format in
    tar.zst) has zstd || missing="$missing zstd" ;;
    tar.gz) has pigz || has gzip || missing="$missing gzip" ;;
  esac
  for tool in sha256sum mkfifo tee wc df chown awk sed sync; do
    has "$tool" || missing="$missing $tool"
  done
  printf '%s' "${missing# }"
}

ensure_tools() {
  missing=$(missing_tools)
  [ -z "$missing" ] && return 0
  if [ "$install_tools" = auto ] && has apk; then
    log "installing$(printf ' %s' "$missing") with apk (needs the Alpine package mirror)"
    # shellcheck disable=SC2086 # one package name per word
    apk add --no-cache --quiet $missing >&2 ||
      die "$EXIT_TOOLS" "apk could not install: $missing. Use an init image that has them (config plexInitImage)"
    missing=$(missing_tools)
  fi
  [ -z "$missing" ] ||
    die "$EXIT_TOOLS" "missing tools: $missing (GNU tar is required). Use an init image that has them (config plexInitImage) or let the script install them with apk"
}

# --- space -------------------------------------------------------------------------------------

check_free_space() {
  available_kib=$(df -Pk "$CONFIG_DIR" | awk 'NR == 2 { print $4 }')
  is_uint "$available_kib" || die "$EXIT_SPACE" "cannot read the free space of $CONFIG_DIR"
  # Block rounding of thousands of small files and tar's directories cost a few percent.
  needed=$((library_bytes + library_bytes / 20 + 16 * 1024 * 1024))
  available=$((available_kib * 1024))
  log "space: library needs about $((needed / 1048576)) MiB, $((available / 1048576)) MiB free on $CONFIG_DIR"
  if [ "$available" -lt "$needed" ]; then
    die "$EXIT_SPACE" "not enough free space on $CONFIG_DIR: need $((needed / 1048576)) MiB, have $((available / 1048576)) MiB. Give the config volume more room (config plexConfigSize) and restart the pod"
  fi
}

# --- download ----------------------------------------------------------------------------------

# Writes the archive bytes to stdout. A broken transfer is resumed at the byte it stopped at with
# curl --continue-at, which fails unless the server answers 206 from exactly that offset, so the
# stream reaching tar is the archive, byte for byte.
fetch_archive() {
  offset=0
  failures=0
  delay=$retry_delay
  attempt=0
  (umask 077 && printf 'url = "%s"\n' "$archive_url" >"$work_dir/curl.conf")
  while :; do
    # Set when the volume filled up or the script was interrupted: no further attempt.
    [ -e "$work_dir/abort" ] && return 1
    attempt=$((attempt + 1))
    if [ "$offset" -gt 0 ]; then
      log "download: resuming at byte $offset of $archive_bytes (attempt $attempt)"
    else
      log "download: $(display_url) ($archive_bytes bytes, attempt $attempt)"
    fi
    # The URL goes through a config file so it never shows in the process list.
    set -- --config "$work_dir/curl.conf" --silent --show-error --fail --no-buffer \
      --connect-timeout "$connect_timeout" --speed-limit 1024 --speed-time "$stall_seconds" \
      --continue-at "$offset" --write-out '%{stderr}plex-init-transfer %{size_download} %{http_code}\n'
    [ -n "$max_rate" ] && set -- "$@" --limit-rate "$max_rate"
    curl "$@" 2>"$work_dir/curl.err" &
    echo "$!" >"$work_dir/curl.pid"
    rc=0
    wait "$!" || rc=$?
    rm -f "$work_dir/curl.pid"
    got=$(awk '$1 == "plex-init-transfer" { n = $2 } END { print n + 0 }' "$work_dir/curl.err")
    http_code=$(awk '$1 == "plex-init-transfer" { c = $3 } END { print c + 0 }' "$work_dir/curl.err")
    offset=$((offset + got))
    if [ "$rc" -eq 0 ] && [ "$offset" -eq "$archive_bytes" ]; then
      log "download: complete, $offset bytes"
      return 0
    fi
    if [ -e "$work_dir/abort" ]; then
      return 1
    fi
    reason=$(grep -v '^plex-init-transfer ' "$work_dir/curl.err" | redact | head -n 3 | tr '\n' ' ')
    if [ "$offset" -gt "$archive_bytes" ]; then
      log "download: received $offset bytes, more than the expected $archive_bytes"
      return 1
    fi
    case $rc in
      0) reason="the server closed the connection after $offset of $archive_bytes bytes" ;;
      23) log "download: stopped, nothing reads the stream any more ($reason)" && return 1 ;;
      33) log "download: the server cannot resume at byte $offset (no HTTP Range support): $reason" && return 1 ;;
      22)
        case $http_code in
          408 | 429 | 5??) ;;
          *)
            log "download: the server refused the archive (HTTP $http_code): the URL's token is wrong or the VM no longer serves it; run pulumi up again"
            return 1
            ;;
        esac
        ;;
    esac
    if [ "$got" -gt 0 ]; then
      failures=0
      delay=$retry_delay
    fi
    failures=$((failures + 1))
    if [ "$failures" -gt "$retries" ]; then
      log "download: giving up after $retries attempts without progress: $reason"
      return 1
    fi
    log "download: attempt $attempt broke after $got bytes (curl exit $rc: $reason); retrying in ${delay}s"
    sleep "$delay"
    delay=$((delay * 2))
    [ "$delay" -le 30 ] || delay=30
  done
}

decompress() {
  case $archive_format in
    tar.zst) zstd -d -c -q ;;
    tar.gz) if has pigz; then pigz -d -c; else gzip -d -c; fi ;;
    tar) cat ;;
  esac
}

# Download -> tee (sha256, byte count) -> decompress -> tar, all streaming. Each stage writes its
# exit status to a file (POSIX sh has no pipefail). tee ignores SIGPIPE, so when the extraction
# stops early the download still runs to the end and the checksum tells a corrupted archive from
# a failed extraction; only a full volume stops the download at once (the abort file).
run_pipeline() {
  {
    rc=0
    fetch_archive || rc=$?
    echo "$rc" >"$work_dir/fetch.status"
  } | {
    trap '' PIPE
    rc=0
    tee "$work_dir/sha.fifo" "$work_dir/count.fifo" 2>/dev/null || rc=$?
    echo "$rc" >"$work_dir/tee.status"
  } | {
    rc=0
    decompress 2>"$work_dir/decompress.err" || rc=$?
    echo "$rc" >"$work_dir/decompress.status"
  } | {
    rc=0
    tar -x -f - -C "$STAGING" --numeric-owner --same-permissions 2>"$work_dir/tar.err" || rc=$?
    if [ "$rc" -ne 0 ] && grep -q 'No space left on device' "$work_dir/tar.err"; then
      : >"$work_dir/abort"
      kill "$(cat "$work_dir/curl.pid" 2>/dev/null)" 2>/dev/null || true
    fi
    # Drain what is left so the stages before see a reader until the download ends.
    cat >/dev/null
    echo "$rc" >"$work_dir/tar.status"
  }
}

download_and_extract() {
  mkfifo "$work_dir/sha.fifo" "$work_dir/count.fifo"
  sha256sum <"$work_dir/sha.fifo" >"$work_dir/sha256" &
  helper_pids=$!
  wc -c <"$work_dir/count.fifo" >"$work_dir/count" &
  helper_pids="$helper_pids $!"
  mkdir -p "$STAGING"
  run_pipeline &
  pipeline_pid=$!
  wait "$pipeline_pid" || true
  pipeline_pid=""
  for pid in $helper_pids; do wait "$pid" || true; done
  helper_pids=""

  fetch_status=$(cat "$work_dir/fetch.status")
  decompress_status=$(cat "$work_dir/decompress.status")
  tar_status=$(cat "$work_dir/tar.status")
  received_sha256=$(cut -d ' ' -f 1 <"$work_dir/sha256")
  received_bytes=$(tr -d ' \n' <"$work_dir/count")

  if [ -e "$work_dir/abort" ]; then
    die "$EXIT_SPACE" "the config volume filled up while extracting (the library is larger than estimated). Give the config volume more room (config plexConfigSize) and restart the pod"
  fi
  [ "$fetch_status" -eq 0 ] ||
    die "$EXIT_DOWNLOAD" "the download failed after $received_bytes of $archive_bytes bytes; nothing was imported"
  [ "$received_bytes" = "$archive_bytes" ] ||
    die "$EXIT_CHECKSUM" "received $received_bytes bytes, expected $archive_bytes; nothing was imported"
  [ "$received_sha256" = "$archive_sha256" ] ||
    die "$EXIT_CHECKSUM" "sha256 of the received archive is $received_sha256, expected $archive_sha256 (corrupted or replaced archive); nothing was imported"
  if [ "$decompress_status" -ne 0 ] || [ "$tar_status" -ne 0 ]; then
    details=$(cat "$work_dir/decompress.err" "$work_dir/tar.err" | redact | head -n 5 | tr '\n' ' ')
    die "$EXIT_EXTRACT" "the archive's checksum is right but extracting it failed (decompress exit $decompress_status, tar exit $tar_status): $details"
  fi
  log "verified: $received_bytes bytes, sha256 $received_sha256"
}

check_layout() {
  [ -d "$STAGING/$PLEX_DATA_RELATIVE" ] ||
    die "$EXIT_LAYOUT" "the archive has no \"$PLEX_DATA_RELATIVE\" directory; it must be rooted so that extracting it in /config gives /config/$PLEX_DATA_RELATIVE"
  for entry in "$STAGING"/* "$STAGING"/.[!.]* "$STAGING"/..?*; do
    [ -e "$entry" ] || [ -L "$entry" ] || continue
    [ "$entry" = "$STAGING/Library" ] ||
      die "$EXIT_LAYOUT" "the archive holds \"${entry#"$STAGING"/}\" next to Library/; only Library/ is expected"
  done
  if [ ! -f "$STAGING/$PLEX_DATA_RELATIVE/Preferences.xml" ]; then
    log "WARNING: the archive has no Preferences.xml; Plex will start as a new, unclaimed server"
  fi
}

write_marker() {
  {
    printf 'imported_at=%s\n' "$(date -u '+%Y-%m-%dT%H:%M:%SZ')"
    printf 'archive_sha256=%s\n' "$1"
    printf 'archive_bytes=%s\n' "$2"
    printf 'archive_format=%s\n' "$3"
    printf 'owner=%s:%s\n' "$plex_uid" "$plex_gid"
  } >"$MARKER.tmp"
  mv -f "$MARKER.tmp" "$MARKER"
}

sync_volume() {
  sync -f "$1" 2>/dev/null || sync
}

# --- main --------------------------------------------------------------------------------------

main() {
  trap on_exit EXIT
  trap on_signal INT TERM

  if [ -f "$MARKER" ]; then
    log "already imported ($(tr '\n' ' ' <"$MARKER")); nothing to do"
    exit 0
  fi
  [ -d "$CONFIG_DIR" ] || die "$EXIT_SETTINGS" "config directory $CONFIG_DIR does not exist (set PLEX_CONFIG_DIR)"
  mkdir -p "$STATE_DIR" || die "$EXIT_SETTINGS" "cannot create $STATE_DIR"
  chmod 700 "$STATE_DIR"
  log_to_volume=yes

  if [ -e "$LIBRARY" ] || [ -L "$LIBRARY" ]; then
    # A run that stopped between the rename and the marker left its receipt in the staging dir.
    if [ -f "$STAGING/verified" ] && [ ! -e "$STAGING/Library" ]; then
      log "the library was moved into place by an earlier run that stopped before the marker; completing it"
      # shellcheck disable=SC2046 # three words written by this script
      set -- $(cat "$STAGING/verified")
      plex_uid=${PLEX_UID:-1000}
      plex_gid=${PLEX_GID:-1000}
      write_marker "$1" "$2" "$3"
      renamed=yes
      rm -rf "$STAGING"
      exit 0
    fi
    renamed=yes # never touch a staging dir next to a library we did not place
    die "$EXIT_FOREIGN_LIBRARY" "$LIBRARY exists but was not imported by plex-init (no $MARKER); it is left untouched. If it is the complete library, create the marker (touch $MARKER); to import the archive instead, move it away and restart the pod"
  fi

  read_settings
  log "importing the Plex library into $CONFIG_DIR (format $archive_format, owner $plex_uid:$plex_gid)"
  if [ -d "$STAGING" ]; then
    log "removing the staging directory left by an interrupted run"
    rm -rf "$STAGING"
  fi
  ensure_tools
  check_free_space

  tmp_base=${PLEX_INIT_TMPDIR:-${TMPDIR:-/tmp}}
  work_dir=$(mktemp -d "$tmp_base/plex-init.XXXXXX") || die "$EXIT_SETTINGS" "cannot create a scratch directory in $tmp_base"

  download_and_extract
  check_layout

  chown -R -h "$plex_uid:$plex_gid" "$STAGING/Library"
  chown "$plex_uid:$plex_gid" "$CONFIG_DIR"
  sync_volume "$STAGING"
  printf '%s %s %s\n' "$archive_sha256" "$archive_bytes" "$archive_format" >"$STAGING/verified"
  mv "$STAGING/Library" "$LIBRARY"
  renamed=yes
  write_marker "$archive_sha256" "$archive_bytes" "$archive_format"
  rm -rf "$STAGING"
  sync_volume "$CONFIG_DIR"
  log "done: $LIBRARY imported and owned by $plex_uid:$plex_gid"
}

main "$@"
