# pimops: build, test and run the toolkit. `make help` lists the targets.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

CARGO   ?= cargo
PREFIX  ?= /usr/local
DESTDIR ?=
TOOLS   := backup-run cf-sync healthcheck hv-provision ovh-order restore-verify swarm-deploy

# traefik and rclone come from wheels installed by scripts/install-deps into .deps/.
export PATH := $(CURDIR)/.deps/bin:$(PATH)

.PHONY: help build test test-only lint man man-check completions install bench fuzz deps demo local local-down \
        server firewall vms dns deploy backup verify check dr-rehearsal

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

deps: ## install and start what the tests need (Debian packages, wheels, dockerd, swarm)
	scripts/install-deps

build: ## release binaries in target/release
	$(CARGO) build --release --locked --workspace --bins

# While lint, man-check and the tests build, the stack's images but backup (it takes the
# backup-run built by then) build in the background: where they are missing that is minutes
# of mmdebstrap the e2e tests would otherwise wait for; where they exist it finds their tags
# at once. The build script's lock makes a test that needs an image wait for this build
# instead of starting a second one.
test: deps ## everything CI runs: deps, lint, man pages up to date, all tests
	mkdir -p target
	stack/images/build base mariadb redis traefik php nginx >target/images-prebuild.log 2>&1 & prebuild=$$!; \
	if $(MAKE) --no-print-directory lint man-check test-only; then rc=0; else rc=$$?; fi; \
	wait $$prebuild || { echo "the background image build failed (target/images-prebuild.log):" >&2; tail -20 target/images-prebuild.log >&2; }; \
	exit $$rc

# The suites run in two groups side by side: the first spends most of its time waiting on
# Docker (stacks deploying, rolling, health-gated), which the second's CPU-bound backup and
# restore tests fill (one after the other they took about 28 min, side by side 14-17).
# The second runs at nice 19: at equal priority it starved the rolling-update tests' tasks,
# and swarm-deploy's lost a request (one 502 in 591) in one of three runs.
TEST_GROUP_DOCKER := pimops-e2e swarm-deploy hv-provision

test-only: ## the test suites alone (components must already run: make deps); every suite runs even after a failure
	# Every binary first: cross-tool tests drive tools other than their own crate's.
	$(CARGO) build --locked --workspace --bins
	$(CARGO) test --locked --workspace --all-targets --no-run
	$(MAKE) --no-print-directory -j2 --keep-going --output-sync=target test-group-docker test-group-rest

.PHONY: test-group-docker test-group-rest
test-group-docker:
	$(CARGO) test --locked $(addprefix --package=,$(TEST_GROUP_DOCKER)) --all-targets --no-fail-fast
test-group-rest:
	nice -n 19 $(CARGO) test --locked --workspace $(addprefix --exclude=,$(TEST_GROUP_DOCKER)) --all-targets --no-fail-fast

# The shell glue: every script in scripts/ with a shebang (the cron files have none).
SCRIPTS := $(shell grep -l '^\#!' scripts/* scripts/*/* 2>/dev/null)

lint: ## cargo fmt --check, clippy -D warnings, shellcheck of scripts/
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --workspace --all-targets -- -D warnings
	shellcheck -x $(SCRIPTS) scripts/lib/*.sh

man: ## regenerate man/ from the clap definitions (commit the result)
	$(CARGO) run --locked -q -p xtask -- man man

man-check: ## fail when man/ is not what `make man` would write
	rm -rf target/man-check
	$(CARGO) run --locked -q -p xtask -- man target/man-check
	diff -ru man target/man-check || { echo "man/ is stale: run 'make man' and commit it" >&2; exit 1; }

completions: ## bash, zsh and fish completions into target/completions
	$(CARGO) run --locked -q -p xtask -- completions target/completions

install: build completions ## install binaries, man pages and completions under $(DESTDIR)$(PREFIX)
	for t in $(TOOLS); do install -Dm755 target/release/$$t "$(DESTDIR)$(PREFIX)/bin/$$t"; done
	for m in man/*.1; do install -Dm644 "$$m" "$(DESTDIR)$(PREFIX)/share/man/man1/$$(basename $$m)"; done
	# The systemd alternative to scripts/cron/backup-run: units and their ExecStart helper.
	install -Dm755 scripts/systemd/pimops-backup-unit "$(DESTDIR)$(PREFIX)/bin/pimops-backup-unit"
	for u in scripts/systemd/*.service scripts/systemd/*.timer; do install -Dm644 "$$u" "$(DESTDIR)$(PREFIX)/lib/systemd/system/$$(basename $$u)"; done
	for t in $(TOOLS); do \
	  install -Dm644 target/completions/$$t.bash "$(DESTDIR)$(PREFIX)/share/bash-completion/completions/$$t"; \
	  install -Dm644 target/completions/_$$t "$(DESTDIR)$(PREFIX)/share/zsh/site-functions/_$$t"; \
	  install -Dm644 target/completions/$$t.fish "$(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/$$t.fish"; \
	done

bench: deps ## performance goals as ratios against baselines run in the same invocation (BENCH_SIZE scales the backup data)
	$(CARGO) build --release --locked --workspace --bins
	$(CARGO) bench --locked -p healthcheck --bench healthcheck
	$(CARGO) bench --locked -p backup-run --bench backup
	$(CARGO) bench --locked -p restore-verify --bench restore
	$(CARGO) bench --locked -p cf-sync --bench sync
	$(CARGO) bench --locked -p swarm-deploy --bench deploy
	$(CARGO) bench --locked -p pimops-e2e --bench chain

fuzz: ## property tests of the parsers with many cases, bounded in time
	PROPTEST_CASES=$${PROPTEST_CASES:-20000} timeout 600 $(CARGO) test --locked --release -p pimops --lib -- never_panic

demo: deps ## the local environment end to end: stack, sample data, backup, verify, healthcheck, summary
	$(CARGO) build --locked --workspace --bins
	scripts/demo

local: deps ## the PIM stack on this machine as env local (prod's latest backup restored when configured)
	$(CARGO) build --locked --workspace --bins
	scripts/local-up

local-down: ## remove the local stack (PURGE=1: its volumes too)
	scripts/local-down

.PHONY: images
images: ## the stack's images from Debian packages (stack/images/build; IMAGES="base mariadb"; backup takes the backup-run built here)
	stack/images/build $(or $(IMAGES),base mariadb redis traefik php nginx backup)

# --- The runbook (docs/runbook.md): each target is a script in scripts/ composing the tools.
# The tools come from PATH (make install) or PIMOPS_BIN_DIR (e.g. target/release); the
# inventory from PIMOPS_CONFIG, else ./infra.toml; secrets from the environment (NAME or
# NAME_FILE). Costly or irreversible steps show their plan and run only with YES=1 (YES=<env>
# for prod VMs and for the rehearsal).
need = $(if $($(1)),,$(error $(1) is not set: make $@ $(1)=$(2)))

server: ## order the server and its IPs once (ovh-order plan → order → wait → ip; YES=1 orders)
	scripts/server

firewall: ## OVH edge firewall: Cloudflare's ranges + admin sources (cf-sync ips | ovh-order firewall; YES=1 applies)
	scripts/firewall

vms: ## Hyper-V VMs: hv-provision plan, shown, then apply with YES=1 (YES=prod for prod); ENV=dev: that VM only
	scripts/vms

dns: ## one env's Cloudflare DNS, WAF and settings (cf-sync plan, then apply with YES=1): make dns ENV=prod
	$(call need,ENV,prod)
	scripts/dns

deploy: ## deploy a build to its branch's env (swarm-deploy resolve → diff → deploy): make deploy BRANCH=main TAG=…
	$(call need,BRANCH,main)
	$(call need,TAG,<image tag>)
	scripts/deploy

backup: ## one backup set of an env now (backup-run init, run all): make backup ENV=prod
	$(call need,ENV,prod)
	scripts/backup

verify: ## prove an env's latest backup restorable (restore-verify verify): make verify ENV=prod
	$(call need,ENV,prod)
	scripts/verify

check: ## an env's health checks once (healthcheck; Nagios exit codes): make check ENV=prod
	$(call need,ENV,prod)
	scripts/check

dr-rehearsal: ## destroy a local env's stack and volumes, rebuild it from backups, prove the data: ENV=local YES=local
	scripts/dr-rehearsal
