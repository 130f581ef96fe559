# shellcheck shell=bash
# Sourced by the runbook scripts (scripts/server, vms, dns, deploy, ...): how they find the
# tools and report. Not executable on its own.
#
# The tools: from PIMOPS_BIN_DIR when set (e.g. target/release), else from PATH
# (`make install`). The inventory: PIMOPS_CONFIG, else ./infra.toml, as every tool reads it.
# Secrets reach the tools through the environment only (NAME or NAME_FILE), never argv.

set -euo pipefail

runbook_name=$(basename "$0")

log() { printf '%s: %s\n' "$runbook_name" "$*" >&2; }
die() { printf '%s: error: %s\n' "$runbook_name" "$*" >&2; exit "${2:-1}"; }

# tool NAME: the path of a pimops tool, or a one-line error (exit 69: unavailable).
tool() {
  local p
  if [ -n "${PIMOPS_BIN_DIR:-}" ]; then
    p=$PIMOPS_BIN_DIR/$1
    [ -x "$p" ] || die "$1 not found in PIMOPS_BIN_DIR=$PIMOPS_BIN_DIR (make build, or cargo build)" 69
  else
    p=$(command -v "$1") || die "$1 is not on PATH: make install, or set PIMOPS_BIN_DIR=target/release" 69
  fi
  printf '%s\n' "$p"
}

# need VAR HINT: a one-line usage error (exit 2) when the variable is empty.
need() {
  [ -n "${!1:-}" ] || die "$1 is not set: $2" 2
}

# confirmed: true when YES=1 (the costly or irreversible step may run).
confirmed() { [ "${YES:-}" = 1 ]; }

# now_s: seconds since the epoch, with fractions, for the figures the scripts print.
now_s() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now_s)" 'BEGIN { printf "%.1f", b - a }'; }

command -v jq >/dev/null 2>&1 || die "jq is needed to read the tools' JSON Lines (apt-get install jq)" 69
