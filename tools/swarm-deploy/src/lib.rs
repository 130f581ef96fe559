//! `swarm-deploy`: branch → env → a health-gated, rolled-back-on-failure deploy of the env's
//! stack on its Docker Swarm.

pub mod admin;
pub mod args;
pub mod deploy;
pub mod docker;
pub mod interpolate;
pub mod plan;
pub mod release;
pub mod render;
pub mod spec;
pub mod state;
pub mod watch;

use std::sync::Arc;

use clap::CommandFactory;
use pimops::cli::ManPage;
use pimops::inventory::{Env, Inventory};
use pimops::output::{Output, Record};
use pimops::{Error, ExitCode, Result};

pub use args::Cli;
use args::{MetaArgs, RunArgs, Verb};
use docker::Docker;
use render::Meta;
use state::State;

/// The clap definition, for man pages and completions.
pub fn command() -> clap::Command {
    Cli::command()
}

/// What the man page says beyond the flags.
pub fn man_page() -> ManPage {
    ManPage {
        exit_status: pimops::cli::standard_exit_status(),
        environment: vec![
            ("PIMOPS_CONFIG", "The inventory file when --config is not given (default ./infra.toml)."),
            ("PIMOPS_COMMIT", "The commit recorded in the pimops.commit label and the audit log when --commit is not given."),
            ("PIMOPS_DEPLOYED_BY", "Who deploys, when --by is not given (default $USER@host)."),
            ("NAME, NAME_FILE", "The value of a stack secret declared with environment: NAME (never written to disk)."),
            ("NO_COLOR", "When set and not empty, no colour on stderr."),
        ],
        examples: vec![
            ("swarm-deploy resolve --branch release/1.4", "The env release/1.4 deploys to."),
            ("swarm-deploy render --env stage --tag 3f2a9c1", "The stack file as it would be deployed."),
            ("swarm-deploy diff --env prod --tag 3f2a9c1", "What a deploy of 3f2a9c1 would change in prod."),
            ("swarm-deploy deploy --branch \"$bamboo_planRepository_branchName\" --tag \"$TAG\"", "From a Bamboo script task (scripts/bamboo-deploy.sh)."),
            ("swarm-deploy rollback --env prod", "Back to the tag deployed before the current one."),
            ("swarm-deploy status --env prod", "Services, replicas, tags, update state."),
            ("swarm-deploy history --env prod --last 10 | jq -r '[.time,.tag,.result]|@tsv'", "The last ten deploys."),
            ("swarm-deploy prune --env prod --keep 5", "Remove unused hashed configs and secrets beyond the newest five per name."),
            ("swarm-deploy unlock --env prod --yes", "Remove a deploy lock left by a deploy that was killed (its holder is shown first)."),
        ],
        sections: vec![(
            "SAFETY",
            vec![
                "One deploy per stack at a time: the lock is a directory on the manager (deploy.state_dir); a second \
                 deploy exits 75 naming the holder, or waits --lock-wait for it.",
                "The release commands run once, with the new image, before any service changes: if they fail nothing \
                 was changed. On a first deploy they run right after the stack is created.",
                "A deploy that fails after the stack deploy (a task error, Swarm pausing or rolling back the update, a \
                 failed health check, the timeout) removes the services it created and rolls back those it updated, \
                 waits until they run their previous image again, and exits 1 with the reason.",
                "A deploy that would change nothing does not touch the Swarm (no service update), and is still audited.",
            ],
        )],
    }
}

/// Run the verb; an error ends the process with its exit code.
pub fn run(cli: Cli) -> Result<ExitCode> {
    let common = &cli.common;
    pimops::output::init_logging("swarm-deploy", common.verbose, common.quiet);
    let inventory = Inventory::load(&common.config_path())?;
    let mut out = Output::stdout(common.format());
    match &cli.verb {
        Verb::Resolve(a) => resolve(&inventory, &a.branch, &mut out),
        Verb::Render(a) => {
            let env = inventory.env(&a.env)?;
            let rendered = render::render(&inventory, env, &meta(&a.tag, &a.meta))?;
            out.text(rendered.text()?.trim_end())?;
            Ok(ExitCode::Ok)
        }
        Verb::Diff(a) => {
            let env = inventory.env(&a.env)?;
            let rendered = render::render(&inventory, env, &meta(&a.tag, &a.meta))?;
            let docker = connect(&inventory, env)?;
            let plan = plan::plan(&docker, &rendered)?;
            let records = plan.records(&rendered);
            if records.is_empty() {
                out.emit(
                    &Record::new("summary")
                        .with("env", env.name.as_str())
                        .with("changes", 0)
                        .with("message", "no changes"),
                    |_| "no changes".into(),
                )?;
            }
            for r in &records {
                out.emit(r, deploy::human_change)?;
            }
            Ok(ExitCode::Ok)
        }
        Verb::Deploy(a) => {
            let env = match (&a.env, &a.branch) {
                (Some(e), _) => inventory.env(e)?,
                (None, Some(b)) => env_for_branch(&inventory, b)?,
                (None, None) => {
                    return Err(Error::usage("--env ENV or --branch BRANCH is required"))
                }
            };
            let m = meta(&a.tag, &a.meta);
            deployer(&inventory, env, m, &a.run, deploy::Action::Deploy)?.deploy(&mut out)?;
            Ok(ExitCode::Ok)
        }
        Verb::Rollback(a) => {
            let env = inventory.env(&a.env)?;
            let docker = connect(&inventory, env)?;
            let tag = match &a.to {
                Some(t) => t.clone(),
                None => admin::previous_tag(&state(&inventory, env, &docker))?,
            };
            let mut run = a.run.clone();
            run.no_release = true;
            let m = meta(&tag, &a.meta);
            deployer(&inventory, env, m, &run, deploy::Action::Rollback)?.deploy(&mut out)?;
            Ok(ExitCode::Ok)
        }
        Verb::Status(a) => {
            let env = inventory.env(&a.env)?;
            let docker = connect(&inventory, env)?;
            admin::status(
                &docker,
                &render::stack_name(&inventory, env),
                &env.name,
                &mut out,
            )
        }
        Verb::History(a) => {
            let env = inventory.env(&a.env)?;
            let docker = connect(&inventory, env)?;
            admin::history(&state(&inventory, env, &docker), a.last, &mut out)
        }
        Verb::Prune(a) => {
            let env = inventory.env(&a.env)?;
            let docker = connect(&inventory, env)?;
            let keep = a.keep.or(env.deploy.keep).unwrap_or(5);
            admin::prune(
                &docker,
                &render::stack_name(&inventory, env),
                keep,
                a.dry_run,
                &mut out,
            )
        }
        Verb::Unlock(a) => {
            let env = inventory.env(&a.env)?;
            let docker = connect(&inventory, env)?;
            admin::unlock(&state(&inventory, env, &docker), a.yes, &mut out)
        }
    }
}

fn resolve(inv: &Inventory, branch: &str, out: &mut Output) -> Result<ExitCode> {
    let env = env_for_branch(inv, branch)?;
    out.emit(
        &Record::new("target")
            .with("env", env.name.as_str())
            .with("branch", branch),
        |_| env.name.clone(),
    )?;
    Ok(ExitCode::Ok)
}

fn env_for_branch<'a>(inv: &'a Inventory, branch: &str) -> Result<&'a Env> {
    inv.env_for_branch(branch).ok_or_else(|| {
        let patterns: Vec<String> = inv
            .envs()
            .iter()
            .map(|e| {
                let globs: Vec<&str> = e.branches.iter().map(|g| g.as_str()).collect();
                format!("{}: [{}]", e.name, globs.join(", "))
            })
            .collect();
        Error::failed(format!(
            "branch {branch:?} deploys nowhere: no env's branches match it ({})",
            patterns.join("; ")
        ))
    })
}

fn meta(tag: &str, m: &MetaArgs) -> Meta {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    Meta {
        tag: tag.to_string(),
        commit: m
            .commit
            .clone()
            .or_else(|| env("PIMOPS_COMMIT"))
            .unwrap_or_else(|| tag.to_string()),
        by: m
            .by
            .clone()
            .or_else(|| env("PIMOPS_DEPLOYED_BY"))
            .unwrap_or_else(|| {
                let user = env("USER").unwrap_or_else(|| "unknown".into());
                let host = rustix::system::uname()
                    .nodename()
                    .to_string_lossy()
                    .into_owned();
                format!("{user}@{host}")
            }),
    }
}

fn connect(inv: &Inventory, env: &Env) -> Result<Docker> {
    let exec = pimops::exec::connect(&env.docker, &inv.ssh_options(env))?;
    Ok(Docker::new(Arc::from(exec)))
}

fn state(inv: &Inventory, env: &Env, docker: &Docker) -> State {
    let dir = env
        .deploy
        .state_dir
        .as_deref()
        .unwrap_or(state::DEFAULT_STATE_DIR);
    State::new(docker.clone(), dir, &render::stack_name(inv, env))
}

fn deployer<'a>(
    inv: &'a Inventory,
    env: &'a Env,
    meta: Meta,
    run: &RunArgs,
    action: deploy::Action,
) -> Result<deploy::Deployer<'a>> {
    if meta.tag.trim().is_empty() {
        return Err(Error::usage("--tag must not be empty"));
    }
    let rendered = render::render(inv, env, &meta)?;
    let docker = connect(inv, env)?;
    let state = state(inv, env, &docker);
    Ok(deploy::Deployer {
        inventory: inv,
        env,
        docker,
        state,
        rendered,
        meta,
        run: run.clone(),
        action,
        resolve_image: run.resolve_image.clone(),
    })
}
