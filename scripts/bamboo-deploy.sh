#!/usr/bin/env bash
# Bamboo script task: deploy the build's branch to the env its name maps to.
#
# Bamboo passes plan variables as environment variables (dots become underscores):
#   bamboo_planRepository_branchName   the branch, e.g. release/1.4   (required)
#   bamboo_planRepository_revision     the commit sha                  (required)
#   bamboo_buildResultKey              e.g. PIM-DEPLOY-42 (recorded as who deployed)
# Optional:
#   PIMOPS_TAG      the image tag to deploy (default: the first 12 characters of the revision,
#                   the tag the build task pushed)
#   PIMOPS_CONFIG   the inventory (default ./infra.toml in the checkout)
#   SWARM_DEPLOY    the swarm-deploy binary (default: swarm-deploy on PATH)
#   SWARM_DEPLOY_ARGS  extra deploy flags, e.g. "--timeout 15m --lock-wait 5m"
#
# The exit code is swarm-deploy's: 0 deployed (or nothing to change), 1 failed and rolled
# back (or the branch maps to no env), 75 another deploy holds the lock, 77/78 access or
# configuration problems. Secrets the stack needs come from Bamboo password variables,
# exported under the names the stack file's secrets name.
set -euo pipefail

branch="${bamboo_planRepository_branchName:?bamboo_planRepository_branchName is not set: run this as a Bamboo script task}"
revision="${bamboo_planRepository_revision:?bamboo_planRepository_revision is not set}"
tag="${PIMOPS_TAG:-${revision:0:12}}"
sd="${SWARM_DEPLOY:-swarm-deploy}"

target="$("$sd" resolve --json --branch "$branch")"
env="$(printf '%s\n' "$target" | sed -n 's/.*"env":"\([^"]*\)".*/\1/p')"
if [[ -z "$env" ]]; then
  echo "bamboo-deploy: swarm-deploy resolve gave no env for $branch: $target" >&2
  exit 1
fi
echo "bamboo-deploy: $branch -> $env, tag $tag" >&2

# shellcheck disable=SC2086 # SWARM_DEPLOY_ARGS is a list of flags on purpose
exec "$sd" deploy --env "$env" --tag "$tag" --commit "$revision" \
  --by "bamboo:${bamboo_buildResultKey:-unknown}" ${SWARM_DEPLOY_ARGS:-}
