#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Lists the license of every module whose packages dlock's modules compile
# (the library, cmd/dlock, bench, etcdlock, pglock: go list -deps -test), read from
# the license file in the module cache, and fails when one is not among the
# permissive licenses that Apache-2.0 code may link (ALLOWED below) or
# cannot be recognised. Offline once "go mod download" has run (.ci/run
# does that first).
#
#   scripts/licenses.sh                 the table, then OK or the failures
#   scripts/licenses.sh classify FILE   the SPDX identifier of one license text
set -euo pipefail
cd "$(dirname "$0")/.."

ALLOWED=" Apache-2.0 MIT BSD-2-Clause BSD-3-Clause ISC "

# classify prints the SPDX identifier of the license text in file $1, or
# "unknown". Only the operative sentences count, not the layout.
classify() {
  local text
  text=$(tr -s '[:space:]' ' ' <"$1")
  case $text in
    *"Apache License"*"Version 2.0"*) echo Apache-2.0 ;;
    *"Permission is hereby granted, free of charge, to any person obtaining a copy"*) echo MIT ;;
    *"Permission to use, copy, modify, and/or distribute this software for any purpose with or without fee is hereby granted"* |\
    *"Permission to use, copy, modify, and distribute this software for any purpose with or without fee is hereby granted"*) echo ISC ;;
    *"Redistribution and use in source and binary forms"*"Neither the name"*) echo BSD-3-Clause ;;
    *"Redistribution and use in source and binary forms"*) echo BSD-2-Clause ;;
    *"Mozilla Public License"*"2.0"*) echo MPL-2.0 ;;
    *"GNU GENERAL PUBLIC LICENSE"* | *"GNU LESSER GENERAL PUBLIC LICENSE"*) echo GPL-family ;;
    *) echo unknown ;;
  esac
}

# licenseFiles lists the license files at the root of a module directory.
licenseFiles() {
  find "$1" -maxdepth 1 -type f \( -iname 'LICENSE*' -o -iname 'LICENCE*' -o -iname 'COPYING*' \) | sort
}

if [ "${1:-}" = classify ]; then
  classify "$2"
  exit 0
fi

failed=0
table=$(mktemp)
trap 'rm -f "$table"' EXIT
for mod in . cmd/dlock bench etcdlock pglock; do
  [ -f "$mod/go.mod" ] || [ "$mod" = cmd/dlock ] || continue
  (cd "$mod" && go list -deps -test -f '{{with .Module}}{{if not .Main}}{{.Path}} {{.Version}} {{.Dir}}{{end}}{{end}}' ./... 2>/dev/null) |
    sed "s|^|$mod |"
done | sort -u -k2,3 | while read -r used path version dir; do
  case $path in github.com/lockdir/dlock*) continue ;; esac   # our own, by replace
  if [ -z "$dir" ] || [ ! -d "$dir" ]; then
    echo "$path $version - not-downloaded $used"
    continue
  fi
  ids=""
  for f in $(licenseFiles "$dir"); do
    ids="$ids${ids:+,}$(classify "$f")"
  done
  echo "$path $version ${ids:-none} $used"
done | sort >"$table"

printf '%-72s %-22s %s\n' MODULE LICENSE "FIRST USED BY"
while read -r path version ids used; do
  printf '%-72s %-22s %s\n' "$path@$version" "$ids" "$used"
  IFS=, read -ra list <<<"$ids"
  for id in "${list[@]}"; do
    if [[ $ALLOWED != *" $id "* ]]; then
      echo "  ^ $path: license $id is not among the allowed:$ALLOWED" >&2
      failed=1
    fi
  done
done <"$table"
echo
awk '{print $3}' "$table" | tr , '\n' | sort | uniq -c | sort -rn | sed 's/^/license files: /'
echo "$(wc -l <"$table") modules"
if [ "$failed" != 0 ]; then
  echo "FAILED: a dependency's license is unknown or not allowed" >&2
  exit 1
fi
echo "OK: every dependency's license is one of:$ALLOWED"
