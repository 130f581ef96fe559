#!/usr/bin/env bash
# Bamboo script task (nightly): prove that an env's backups restore.
#
#   scripts/bamboo-verify.sh
#
# Runs `restore-verify --env ENV --json verify` on the agent: the env's latest complete backup
# set restored into scratch space (a throwaway mariadbd, never the env's database), binlogs
# replayed, tables, row counts, checksums and volumes checked, part of the repository's data
# read by `restic check`.
#
# stdout: one line, from restore-verify's summary record, e.g.
#   bamboo-verify: prod: ok: set 20261204T031500Z-1a2b3c, 14 checks passed, RTO 41.2 s, 1073741824 bytes restored
#   bamboo-verify: prod: failed: set 20261204T031500Z-1a2b3c, failed checks: row-counts (13 passed)
#   bamboo-verify: prod: not verified (restore-verify exit 69, no summary)
# stderr: restore-verify's records (JSON Lines) and its errors.
#
# Exit: restore-verify's: 0 verified; 1 a check failed; 69 the repository stayed
# unreachable; 75 another verify of the env holds its lock; 77 access refused; 78 configuration.
#
# Optional:
#   VERIFY_ENV      the env whose backups are verified (default prod)
#   VERIFY_ARGS     more verify flags, e.g. "--work-dir /srv/scratch --read-data-subset 10%"
#   PIMOPS_CONFIG   the inventory (default ./infra.toml in the checkout)
#   RESTORE_VERIFY  the binary (default: restore-verify on PATH)
# The repository's credentials come from Bamboo password variables exported under the names
# restore-verify reads (RESTIC_PASSWORD or RESTIC_PASSWORD_FILE, AWS_ACCESS_KEY_ID,
# AWS_SECRET_ACCESS_KEY, each also as NAME_FILE). The agent needs restic, mariadbd and
# mariabackup, and the room of one restored set in the work directory.
set -euo pipefail

rv="${RESTORE_VERIFY:-restore-verify}"
env="${VERIFY_ENV:-prod}"

out="$(mktemp)"
trap 'rm -f "$out"' EXIT

rc=0
# shellcheck disable=SC2086 # VERIFY_ARGS is a list of flags on purpose
"$rv" --env "$env" --json verify ${VERIFY_ARGS:-} >"$out" || rc=$?
cat "$out" >&2

summary="$(grep '^{"type":"summary"' "$out" | tail -n 1 || true)"
if [[ -z "$summary" ]]; then
  echo "bamboo-verify: $env: not verified (restore-verify exit $rc, no summary)"
  exit "$rc"
fi
printf '%s\n' "$summary" | awk -v env="$env" '
  function str(key,   i, s) {
    i = index($0, "\"" key "\":\"")
    if (i == 0) return ""
    s = substr($0, i + length(key) + 4)
    return substr(s, 1, index(s, "\"") - 1)
  }
  function num(key,   i, s) {
    i = index($0, "\"" key "\":")
    if (i == 0) return ""
    s = substr($0, i + length(key) + 3)
    if (!match(s, /^[0-9.eE+-]+/)) return ""
    return substr(s, 1, RLENGTH)
  }
  function list(key,   i, s) {
    i = index($0, "\"" key "\":[")
    if (i == 0) return ""
    s = substr($0, i + length(key) + 4)
    s = substr(s, 1, index(s, "]") - 1)
    gsub(/"/, "", s)
    gsub(/,/, ", ", s)
    return s
  }
  {
    if (str("result") == "ok")
      printf "bamboo-verify: %s: ok: set %s, %s checks passed, RTO %s s, %s bytes restored\n",
        env, str("set"), num("checks_passed"), num("rto_seconds"), num("bytes_restored")
    else
      printf "bamboo-verify: %s: %s: set %s, failed checks: %s (%s passed)\n",
        env, str("result"), str("set"), list("failures"), num("checks_passed")
  }'
exit "$rc"
