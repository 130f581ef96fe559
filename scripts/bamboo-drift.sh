#!/usr/bin/env bash
# Bamboo script task (nightly): does what runs still match this checkout?
#
#   scripts/bamboo-drift.sh [ENV...]
#
# For each env (the arguments; without any, the env the plan branch deploys to, from
# `swarm-deploy resolve --branch "$bamboo_planRepository_branchName"`), two read-only checks:
#   cloudflare  cf-sync plan --env ENV --expect-no-changes: the zone's records, WAF rules or
#               settings differ from the inventory (a change made in the dashboard)
#   swarm       swarm-deploy diff --env ENV --tag TAG: deploying this revision would change a
#               service, config, secret or network (a hand-made `docker service update`, an
#               inventory change never deployed, a commit whose deploy failed)
# TAG and the commit are the ones bamboo-deploy.sh deploys: PIMOPS_TAG, else the first 12
# characters of bamboo_planRepository_revision. So "no drift" means: deploying this build
# would change nothing.
#
# stdout: one line per env, e.g.
#   bamboo-drift: prod: no drift: cloudflare: no changes; swarm: no changes
#   bamboo-drift: stage: drift: cloudflare: no changes; swarm: 1 change (service pim_php update env)
#   bamboo-drift: dev: not checked: cloudflare: cf-sync exit 78; swarm: no changes
# stderr: the tools' errors, and the change records (JSON Lines) of each check that drifted.
#
# Exit: 0 no drift; 1 drift; when a check could not run, the exit code of the first one that
# could not (69 API or manager unreachable, 77 refused, 78 configuration), after every env was
# checked.
#
# Optional:
#   DRIFT_CHECKS   the checks, default "cloudflare swarm" ("swarm" for envs without a zone)
#   PIMOPS_CONFIG  the inventory (default ./infra.toml in the checkout)
#   SWARM_DEPLOY, CF_SYNC  the binaries (default: swarm-deploy and cf-sync on PATH)
# cf-sync reads CLOUDFLARE_API_TOKEN (or _FILE); swarm-deploy needs what a deploy needs: SSH
# access to the manager and the stack's secrets (diff renders the stack, and a secret's value
# names it). Both only read.
set -euo pipefail

sd="${SWARM_DEPLOY:-swarm-deploy}"
cf="${CF_SYNC:-cf-sync}"
checks="${DRIFT_CHECKS:-cloudflare swarm}"
revision="${bamboo_planRepository_revision:-}"
tag="${PIMOPS_TAG:-${revision:0:12}}"
if [[ -z "$tag" ]]; then
  echo "bamboo-drift: neither PIMOPS_TAG nor bamboo_planRepository_revision is set: which build should run?" >&2
  exit 2
fi
if [[ -z "${checks// /}" ]]; then
  echo "bamboo-drift: DRIFT_CHECKS is empty: nothing to check" >&2
  exit 2
fi
for check in $checks; do
  case $check in
    cloudflare|swarm) ;;
    *) echo "bamboo-drift: DRIFT_CHECKS: unknown check '$check' (cloudflare, swarm)" >&2; exit 2 ;;
  esac
done

envs=("$@")
if (( ${#envs[@]} == 0 )); then
  branch="${bamboo_planRepository_branchName:?no ENV given and bamboo_planRepository_branchName is not set}"
  target="$("$sd" resolve --json --branch "$branch")"
  env="$(printf '%s\n' "$target" | sed -n 's/.*"env":"\([^"]*\)".*/\1/p')"
  if [[ -z "$env" ]]; then
    echo "bamboo-drift: swarm-deploy resolve gave no env for $branch: $target" >&2
    exit 1
  fi
  envs=("$env")
fi

# The change records on stdin as "N change(s) (kind name action[ field]; ...)", at most five
# listed; nothing when there are none. Fields are read from the first occurrence of their key,
# which in both tools' records is the record's own, before any nested before/after value.
summarize() {
  awk '
    function field(key,   i, s) {
      i = index($0, "\"" key "\":\"")
      if (i == 0) return ""
      s = substr($0, i + length(key) + 4)
      return substr(s, 1, index(s, "\"") - 1)
    }
    /^\{"type":"change"/ {
      n++
      if (n > 5) next
      item = field("kind") " " field("name") " " field("action")
      if (field("field") != "") item = item " " field("field")
      list = list (n > 1 ? "; " : "") item
    }
    END {
      if (n == 0) exit
      if (n > 5) list = list "; " (n - 5) " more"
      printf "%d change%s (%s)\n", n, (n == 1 ? "" : "s"), list
    }'
}

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

status=0   # the first check that could not run, else 0
drift=0
for env in "${envs[@]}"; do
  parts=()
  verdict="no drift"
  for check in $checks; do
    if [[ $check == cloudflare ]]; then
      tool="cf-sync"
      cmd=("$cf" -q plan --env "$env" --expect-no-changes --json)
    else
      tool="swarm-deploy"
      cmd=("$sd" -q diff --env "$env" --tag "$tag" --json)
      if [[ -n "$revision" ]]; then cmd+=(--commit "$revision"); fi
    fi
    rc=0
    "${cmd[@]}" >"$tmp/out" || rc=$?
    changes="$(summarize <"$tmp/out")"
    # cf-sync --expect-no-changes exits 1 for pending changes; swarm-deploy diff exits 0 and
    # lists them. Any other exit, or 1 without change records, means the check did not run.
    if [[ -n "$changes" ]] && { (( rc == 0 )) || { (( rc == 1 )) && [[ $tool == cf-sync ]]; }; }; then
      parts+=("$check: $changes")
      [[ $verdict == "not checked" ]] || verdict=drift
      drift=1
      echo "bamboo-drift: $env: $check changes:" >&2
      grep '^{"type":"change"' "$tmp/out" >&2 || true
    elif (( rc == 0 )); then
      parts+=("$check: no changes")
    else
      parts+=("$check: $tool exit $rc")
      verdict="not checked"
      (( status != 0 )) || status=$rc
    fi
  done
  summary="$(printf '%s; ' "${parts[@]}")"
  echo "bamboo-drift: $env: $verdict: ${summary%; }"
done

if (( status != 0 )); then exit "$status"; fi
exit "$drift"
