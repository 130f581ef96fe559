//! `cf-sync`: keeps each env's Cloudflare zone equal to the inventory. `plan` reads and
//! prints, `apply` re-reads, checks the plan still holds and the safety brakes, then
//! writes; `adopt` marks matching hand-made records as owned; `ips` prints Cloudflare's IP
//! ranges for origin allow-lists; `origin-cert` gets the origin's certificate from the
//! Origin CA.

pub mod adopt;
pub mod apply;
pub mod args;
pub mod ips;
pub mod normalize;
pub mod origin_cert;
pub mod plan;
pub mod render;
pub mod settings;

use std::collections::BTreeMap;
use std::io::BufReader;
use std::time::Instant;

use clap::CommandFactory;
use pimops::cli::ManPage;
use pimops::cloudflare::Client;
use pimops::inventory::{Env, Inventory};
use pimops::output::{Output, Record};
use pimops::{Error, ExitCode, Result};

pub use args::Cli;
use args::{ApplyArgs, PlanArgs, Verb};
use plan::{EnvPlan, ZoneState};

/// The clap definition, for man pages and completions.
pub fn command() -> clap::Command {
    Cli::command()
}

/// What the man page says beyond the flags.
pub fn man_page() -> ManPage {
    let mut environment = vec![(
        "CLOUDFLARE_API_TOKEN, CLOUDFLARE_API_TOKEN_FILE",
        "The API token (Zone:Read, DNS:Edit, Zone WAF:Edit, Zone Settings:Edit; SSL and Certificates:Edit for origin-cert), from the variable or the file it names. Not needed by ips, nor by origin-cert when it keeps the certificate it has.",
    )];
    environment.extend(pimops::cli::common_environment());
    environment.push((
        "XDG_CACHE_HOME",
        "Where ips keeps the last ranges it fetched (pimops/cloudflare-ips.json).",
    ));
    ManPage {
        exit_status: pimops::cli::standard_exit_status(),
        environment,
        examples: vec![
            ("cf-sync plan --env prod", "What would change in prod's zone; + CREATE, ± MODIFY, - DELETE on a terminal."),
            ("cf-sync plan --expect-no-changes >/dev/null", "Drift detection in CI: exit 1 when any zone differs from infra.toml."),
            ("cf-sync plan --env prod > plan.jsonl && cf-sync apply --plan plan.jsonl", "Review, then apply exactly that plan (refused if the zone changed meanwhile)."),
            ("cf-sync apply --env stage --delete", "Plan and apply, also deleting owned records no longer in the inventory."),
            ("cf-sync adopt --env prod --dry-run", "Which existing records equal to the inventory's would become owned."),
            ("cf-sync ips --format cidrs | ovh-order firewall --ip 203.0.113.10 --from - --apply", "Feed Cloudflare's ranges to the edge firewall of the origin IP."),
            ("cf-sync ips --format traefik --out stack/traefik/cloudflare.yml", "The Traefik allow-list middleware file, rewritten only when the ranges change."),
            ("cf-sync origin-cert --env prod --out /etc/pimops/origin-prod", "The origin's certificate for prod's domain and *.domain (origin.crt, origin.key); kept while valid for more than 30 days."),
        ],
        sections: vec![
            (
                "OWNERSHIP",
                vec![
                    "A record is owned by env E when its comment is exactly cf-sync:E (set on the records cf-sync creates, and by adopt); a WAF custom rule when its ref starts with cf-sync-E-. Only owned records and rules are updated or deleted. Everything else, made by hand, by another tool or by another env sharing the zone, is counted as unmanaged and never touched.",
                    "Owned records and rules that are no longer in the inventory are kept and reported as orphaned, unless plan or apply is given --delete.",
                    "A record the inventory wants that already exists unowned is not created again: the plan counts it as unmanaged and logs that adopt would take it.",
                ],
            ),
            (
                "SAFETY",
                vec![
                    "apply refuses (exit 1) without --force when more than 30% of an env's owned records would be updated or deleted in a zone of 10 or more records, and whenever the apex NS records would change.",
                    "apply --plan re-reads the zones and refuses (exit 1) when the fresh plan differs from the file: review the new plan instead of applying an old one.",
                ],
            ),
            (
                "ORIGIN CERTIFICATE",
                vec![
                    "origin-cert --env E --out DIR writes DIR/origin.crt and DIR/origin.key (mode 0600) for the Swarm secret the stack's Traefik serves: a certificate from Cloudflare's Origin CA for the env's domain and *.domain. The private key and the CSR are made on this machine; only the CSR is sent, and the key is never printed or logged. Both files are replaced atomically.",
                    "A certificate already in DIR for the same hostnames and key type, matching its key and valid for more than 30 days, is kept without any API call; otherwise a new key and certificate replace it (--key-type ecc or rsa, --validity 7, 30, 90, 365, 730, 1095 or 5475 days).",
                ],
            ),
            (
                "NORMALISATION",
                vec![
                    "Names are compared as lower-case FQDNs without trailing dot; CNAME, MX and NS targets likewise; TXT content with or without quotes; IPv6 addresses in their compressed form. Proxied records always have the automatic TTL, so a ttl in the inventory is ignored for them.",
                ],
            ),
        ],
    }
}

/// Run the verb; the exit code of a completed run.
pub fn run(cli: Cli) -> Result<ExitCode> {
    let common = &cli.common;
    pimops::output::init_logging("cf-sync", common.verbose, common.quiet);
    let mut out = Output::stdout(common.format());
    match &cli.verb {
        Verb::Plan(a) => plan_verb(&cli, a, &mut out),
        Verb::Apply(a) => apply_verb(&cli, a, &mut out),
        Verb::Adopt(a) => {
            let inv = Inventory::load(&common.config_path())?;
            let client = Client::from_env(&inv.cloudflare().api)?;
            let envs = select_envs(&inv, a.env.as_deref())?;
            adopt::run(&client, &inv, &envs, a.dry_run, &mut out)?;
            Ok(ExitCode::Ok)
        }
        Verb::Ips(a) => ips::run(common, a, &mut out).map(|_| ExitCode::Ok),
        Verb::OriginCert(a) => {
            let inv = Inventory::load(&common.config_path())?;
            origin_cert::run(&inv, a, &mut out).map(|_| ExitCode::Ok)
        }
    }
}

/// The envs to work on: the one named, or every env with a zone.
pub fn select_envs<'a>(inv: &'a Inventory, name: Option<&str>) -> Result<Vec<&'a Env>> {
    match name {
        Some(n) => {
            let env = inv.env(n)?;
            if env.zone.is_none() {
                return Err(Error::config(format!(
                    "{}: env.{n}.zone: missing: cf-sync needs the env's Cloudflare zone",
                    inv.file()
                )));
            }
            Ok(vec![env])
        }
        None => Ok(inv.envs().iter().filter(|e| e.zone.is_some()).collect()),
    }
}

/// Every selected env's plan, reading each zone once.
fn plan_all(
    client: &Client,
    inv: &Inventory,
    envs: &[&Env],
    delete: bool,
) -> Result<(Vec<EnvPlan>, BTreeMap<String, ZoneState>)> {
    // Checked before any API call: a conflict between envs is the inventory's fault.
    let zone_settings = settings::by_zone(inv)?;
    let none = settings::ZoneSettings::new();
    let mut states: BTreeMap<String, ZoneState> = BTreeMap::new();
    let mut plans = Vec::new();
    for env in envs {
        let Some(zone) = env.zone.as_deref() else {
            continue;
        };
        let settings = zone_settings.get(zone).unwrap_or(&none);
        // Settings belong to the zone: the first selected env of a zone plans them.
        let first_of_zone = !states.contains_key(zone);
        if first_of_zone {
            states.insert(
                zone.to_string(),
                ZoneState::read(client, zone, !settings.is_empty())?,
            );
        }
        let Some(state) = states.get(zone) else {
            continue;
        };
        let plan = plan::plan_env(
            env,
            state,
            if first_of_zone { settings } else { &none },
            delete,
        )?;
        if plan.adoptable > 0 {
            log::warn!(
                "{zone} ({}): {} record(s) the inventory wants exist but are not owned by cf-sync: \
                 left alone; `cf-sync adopt --env {}` takes them",
                env.name,
                plan.adoptable,
                env.name
            );
        }
        plans.push(plan);
    }
    Ok((plans, states))
}

fn plan_verb(cli: &Cli, a: &PlanArgs, out: &mut Output) -> Result<ExitCode> {
    let inv = Inventory::load(&cli.common.config_path())?;
    let client = Client::from_env(&inv.cloudflare().api)?;
    let envs = select_envs(&inv, a.select.env.as_deref())?;
    let start = Instant::now();
    let (plans, _) = plan_all(&client, &inv, &envs, a.select.delete)?;
    for p in &plans {
        render::plan(out, p, false)?;
        if let Some(why) = p.needs_force() {
            log::warn!("apply will refuse this without --force: {why}");
        }
    }
    log::info!(
        "{} API calls in {:.2}s",
        client.calls(),
        start.elapsed().as_secs_f64()
    );
    let changes: usize = plans.iter().map(|p| p.changes.len()).sum();
    if a.expect_no_changes && changes > 0 {
        log::error!("{changes} change(s) pending: the zones differ from the inventory");
        return Ok(ExitCode::Failed);
    }
    Ok(ExitCode::Ok)
}

/// The changes of a plan file by env, and the envs and delete flag its summaries name.
struct PlanFile {
    changes: BTreeMap<String, Vec<String>>,
    envs: Vec<(String, bool)>,
}

fn read_plan_file(path: &std::path::Path) -> Result<PlanFile> {
    let records = if path.as_os_str() == "-" {
        pimops::output::read_records("<stdin>", std::io::stdin().lock())?
    } else {
        let label = path.display().to_string();
        let f = std::fs::File::open(path).map_err(|e| {
            Error::usage(format!(
                "{label}: cannot read: {}",
                pimops::error::io_reason(&e)
            ))
        })?;
        pimops::output::read_records(&label, BufReader::new(f))?
    };
    let mut file = PlanFile {
        changes: BTreeMap::new(),
        envs: Vec::new(),
    };
    for r in records {
        let env = r
            .get("env")
            .and_then(|v| v.as_str())
            .ok_or_else(|| Error::data(format!("plan: a {:?} record without \"env\"", r.kind())))?
            .to_string();
        match r.kind() {
            "change" => file.changes.entry(env).or_default().push(r.to_json_line()),
            "summary" => {
                let delete = r.get("delete").and_then(|v| v.as_bool()).unwrap_or(false);
                file.envs.push((env, delete));
            }
            _ => {}
        }
    }
    if file.envs.is_empty() {
        return Err(Error::data(
            "plan: no summary records: expected the output of `cf-sync plan`",
        ));
    }
    Ok(file)
}

fn apply_verb(cli: &Cli, a: &ApplyArgs, out: &mut Output) -> Result<ExitCode> {
    let inv = Inventory::load(&cli.common.config_path())?;
    let client = Client::from_env(&inv.cloudflare().api)?;
    let start = Instant::now();
    let from_file = a.plan.as_deref().map(read_plan_file).transpose()?;
    let (envs, delete) = match &from_file {
        Some(f) => {
            if a.select.delete {
                return Err(Error::usage(
                    "--delete with --plan: the plan already says whether it deletes",
                ));
            }
            let mut envs = Vec::new();
            for (name, _) in &f.envs {
                if a.select.env.as_deref().is_none_or(|e| e == name) {
                    envs.push(select_envs(&inv, Some(name))?[0]);
                }
            }
            let delete = f.envs.iter().any(|(_, d)| *d);
            (envs, delete)
        }
        None => (select_envs(&inv, a.select.env.as_deref())?, a.select.delete),
    };
    let (plans, mut states) = plan_all(&client, &inv, &envs, delete)?;
    if let Some(f) = &from_file {
        check_unchanged(f, &plans)?;
    }
    for p in &plans {
        if let (Some(why), false) = (p.needs_force(), a.force) {
            return Err(Error::failed(format!("refused: {why}")));
        }
    }
    let limit = inv.cloudflare().batch_limit.get();
    for p in &plans {
        if p.changes.is_empty() {
            render::plan(out, p, true)?;
            continue;
        }
        let env = inv.env(&p.env)?;
        let state = states
            .get_mut(&p.zone)
            .ok_or_else(|| Error::failed(format!("{}: zone was not read", p.zone)))?;
        apply::apply_env(&client, env, p, state, limit)?;
        render::plan(out, p, true)?;
    }
    log::info!(
        "{} API calls in {:.2}s",
        client.calls(),
        start.elapsed().as_secs_f64()
    );
    Ok(ExitCode::Ok)
}

/// Refuse a plan file that is not what the zone needs now.
fn check_unchanged(file: &PlanFile, plans: &[EnvPlan]) -> Result<()> {
    let mut stale = Vec::new();
    for p in plans {
        let mut fresh: Vec<String> = p
            .changes
            .iter()
            .map(|c| c.record(&p.env, &p.zone).to_json_line())
            .collect();
        let mut planned: Vec<String> = file.changes.get(&p.env).cloned().unwrap_or_default();
        // Lines are compared as parsed records, so key order and spacing do not matter.
        let canon = |lines: &mut Vec<String>| {
            for l in lines.iter_mut() {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(l) {
                    if let Ok(r) = Record::from_value(v) {
                        *l = canonical(&r);
                    }
                }
            }
            lines.sort();
        };
        canon(&mut fresh);
        canon(&mut planned);
        if fresh != planned {
            stale.push(format!(
                "{} ({}): the plan has {} change(s), the zone now needs {}",
                p.zone,
                p.env,
                planned.len(),
                fresh.len()
            ));
        }
    }
    if stale.is_empty() {
        Ok(())
    } else {
        Err(Error::failed(format!(
            "refused: the zone changed since the plan was made ({}); run `cf-sync plan` again",
            stale.join("; ")
        )))
    }
}

/// A record as JSON with sorted keys.
fn canonical(r: &Record) -> String {
    let sorted: BTreeMap<&String, &serde_json::Value> = r.fields().iter().collect();
    serde_json::to_string(&sorted).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn man_pages_render() {
        let dir = std::env::temp_dir().join(format!("cf-sync-man-{}", std::process::id()));
        let files = pimops::cli::write_man_pages(command(), &man_page(), &dir).unwrap();
        let page = std::fs::read_to_string(&files[0]).unwrap();
        for needle in [
            "OWNERSHIP",
            "SAFETY",
            "ORIGIN CERTIFICATE",
            "CLOUDFLARE_API_TOKEN",
        ] {
            assert!(page.contains(needle), "{needle} missing");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
