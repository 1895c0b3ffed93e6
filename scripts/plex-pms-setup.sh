#!/usr/bin/with-contenv bash
# shellcheck shell=bash
# plex-pms-setup.sh: makes the Plex container match the VM before Plex starts.
#
# Mounted by plex-migrate into the pms-docker image as /etc/cont-init.d/41-plex-migrate, so the
# image's init (s6-overlay) runs it as root after 40-plex-first-run (which renames the image's
# plex user to PLEX_UID/PLEX_GID and writes ADVERTISE_IP into Preferences.xml) and before
# Plex starts. The chart mounts it in the init container too, where nothing runs it.
#
#   * PLEX_MIGRATE_GROUPS: comma-separated gids the VM's plex user was a member of (besides its
#     primary group). Plex starts through `s6-setuidgid plex`, which takes the supplementary
#     groups from the image's /etc/group, so each gid is made a group there (named after an
#     existing group with that gid, else vm-<gid>) and plex is added to it. Media readable only
#     through such a group stays readable.
#   * PLEX_MIGRATE_LAN_NETWORKS: the value for Preferences.xml's LanNetworksBandwidth (the VM's
#     LAN networks plus the cluster's pod and node ranges), so clients that reach Plex from
#     cluster addresses count as local, as they did on the VM's LAN.
#   * PLEX_MIGRATE_PREF_FILE: Preferences.xml (default: where the image keeps it).
#
# Every change is one line on stdout (the container log). An error stops the container's start,
# with the reason, rather than running Plex differently from the VM.
set -euo pipefail

PREF_FILE=${PLEX_MIGRATE_PREF_FILE:-/config/Library/Application Support/Plex Media Server/Preferences.xml}

log() { printf '[plex-migrate] %s\n' "$*"; }
fail() {
  log "error: $*"
  exit 1
}

is_gid() { case $1 in '' | *[!0-9]*) return 1 ;; *) [ "${#1}" -le 10 ] ;; esac }

# Every setting is checked before anything changes.
check_settings() {
  local gid
  for gid in ${PLEX_MIGRATE_GROUPS//,/ }; do
    is_gid "$gid" || fail "PLEX_MIGRATE_GROUPS holds \"$gid\", which is not a gid"
  done
  case ${PLEX_MIGRATE_LAN_NETWORKS:-} in
    *[!0-9A-Fa-f.:/,]*) fail "PLEX_MIGRATE_LAN_NETWORKS \"$PLEX_MIGRATE_LAN_NETWORKS\" is not a list of networks" ;;
  esac
}

add_groups() {
  local gids=${PLEX_MIGRATE_GROUPS:-} gid name
  [ -n "$gids" ] || return 0
  for gid in ${gids//,/ }; do
    name=$(getent group "$gid" | cut -d: -f1 || true)
    if [ -z "$name" ]; then
      name=vm-$gid
      groupadd -g "$gid" "$name" || fail "cannot create group $name ($gid)"
      log "group $name ($gid) created"
    fi
    if id -nG plex | tr ' ' '\n' | grep -qxF "$name"; then
      log "plex is already in group $name ($gid)"
    else
      usermod -a -G "$name" plex || fail "cannot add plex to group $name ($gid)"
      log "plex added to group $name ($gid)"
    fi
  done
}

# The image's own setPref (40-plex-first-run): update the attribute, or insert it.
set_pref() {
  local key=$1 value=$2 count
  count=$(xmlstarlet sel -t -v "count(/Preferences/@$key)" "$PREF_FILE")
  if [ "${count:-0}" -gt 0 ]; then
    xmlstarlet ed --inplace --update "/Preferences/@$key" -v "$value" "$PREF_FILE"
  else
    xmlstarlet ed --inplace --insert /Preferences --type attr -n "$key" -v "$value" "$PREF_FILE"
  fi
}

set_lan_networks() {
  local wanted=${PLEX_MIGRATE_LAN_NETWORKS:-} current
  [ -n "$wanted" ] || return 0
  [ -f "$PREF_FILE" ] || fail "no Preferences.xml at $PREF_FILE"
  current=$(xmlstarlet sel -T -t -v /Preferences/@LanNetworksBandwidth "$PREF_FILE" || true)
  if [ "$current" = "$wanted" ]; then
    log "LAN networks already $wanted"
    return 0
  fi
  set_pref LanNetworksBandwidth "$wanted"
  log "LAN networks: ${current:-none} -> $wanted"
}

PLEX_MIGRATE_GROUPS=${PLEX_MIGRATE_GROUPS:-}
check_settings
add_groups
set_lan_networks
