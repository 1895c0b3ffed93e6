#!/usr/bin/env bash
# Prints, as a JSON array, the Pulumi stacks a change affects, for the deployment pipeline's
# preview matrix: a change to a stack file (Pulumi.<stack>.yaml) affects that stack; a change to
# anything the program is built from affects every stack; documentation alone affects none.
#
# usage: affected-stacks.sh [--except <stack>]... <base-ref> [<head-ref>]   (inside the repository)
#   --except <stack>  never list this stack (the pipeline previews pull requests without prod's
#                     credentials, so prod is never in a pull request's matrix)
set -euo pipefail

usage="usage: affected-stacks.sh [--except <stack>]... <base-ref> [<head-ref>]"
excepted=()
while [ "${1:-}" = --except ]; do
  excepted+=("${2:?$usage}")
  shift 2
done
base=${1:?$usage}
head=${2:-HEAD}

all_stacks() {
  git ls-tree --name-only "$head" | sed -n 's/^Pulumi\.\(.*\)\.yaml$/\1/p' | sort
}

is_documentation() {
  case "$1" in
    *.md | docs/* | LICENSE*) return 0 ;;
    *) return 1 ;;
  esac
}

affected=()
program_changed=false
while IFS= read -r file; do
  [ -n "$file" ] || continue
  case "$file" in
    Pulumi.yaml) program_changed=true ;;
    Pulumi.*.yaml)
      stack=${file#Pulumi.}
      affected+=("${stack%.yaml}")
      ;;
    *) is_documentation "$file" || program_changed=true ;;
  esac
done < <(git diff --name-only "$base...$head")

if [ "$program_changed" = true ]; then
  mapfile -t affected < <(all_stacks)
fi

# Only stacks that still exist at head (a deleted stack file has nothing to preview), sorted, unique.
mapfile -t existing < <(all_stacks)
printf '%s\n' "${affected[@]+"${affected[@]}"}" | sort -u | while IFS= read -r stack; do
  [ -n "$stack" ] || continue
  for skip in "${excepted[@]+"${excepted[@]}"}"; do
    [ "$skip" = "$stack" ] && continue 2
  done
  for known in "${existing[@]+"${existing[@]}"}"; do
    [ "$known" = "$stack" ] && printf '%s\n' "$stack"
  done
done | python3 -c 'import json, sys; print(json.dumps([l.strip() for l in sys.stdin if l.strip()]))'
