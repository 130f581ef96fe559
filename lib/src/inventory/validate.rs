//! Rules that serde cannot check on one value: names, cross-references between keys, the
//! merged backup settings, and the checks expanded for every env they apply to.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::error::Result;
use crate::health::CheckSpec;

use super::backup::{pick, Backup, BackupPassword, BackupSettings, Level};
use super::cloudflare::DnsType;
use super::locate::KeyPath;
use super::model::Env;
use super::{env_list, expand, Inventory, Raw, Source};

fn root() -> KeyPath {
    KeyPath::default()
}

pub(super) fn inventory(src: &Source, raw: Raw) -> Result<Inventory> {
    check_name(src, &root().key("project"), &raw.project)?;
    if let Some(ovh) = &raw.ovh {
        ovh_section(src, ovh)?;
    }
    if let Some(hv) = &raw.hyperv {
        for (key, value) in [
            ("host", &hv.host),
            ("user", &hv.user),
            ("switch", &hv.switch),
            ("vm_dir", &hv.vm_dir),
            ("base_vhdx", &hv.base_vhdx),
        ] {
            non_empty(src, &root().key("hyperv").key(key), value)?;
        }
    }
    http_url(
        src,
        &root().key("cloudflare").key("api"),
        &raw.cloudflare.api,
    )?;
    backup_defaults(src, &raw.backup)?;

    let mut envs = raw.env.0;
    for env in &mut envs {
        env_section(src, &raw.project, env)?;
        env.merged_backup = merge_backup(src, &raw.project, &raw.backup, env)?;
    }
    let expanded = checks(src, &raw.project, &envs, &raw.check)?;
    Ok(Inventory {
        file: src.label.clone(),
        dir: PathBuf::from("."),
        project: raw.project,
        ovh: raw.ovh,
        hyperv: raw.hyperv,
        cloudflare: raw.cloudflare,
        ssh: raw.ssh,
        envs,
        checks: raw.check,
        expanded,
    })
}

/// Project and env names end up in VM, stack, service and host names.
fn check_name(src: &Source, path: &KeyPath, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 32
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(src.error_at(path, format!("{name:?} is not a valid name (lowercase letters, digits, '-' and '_', up to 32, starting with a letter or digit)")))
    }
}

fn non_empty(src: &Source, path: &KeyPath, value: &str) -> Result<()> {
    if value.trim().is_empty() {
        Err(src.error_at(path, "must not be empty"))
    } else {
        Ok(())
    }
}

fn http_url(src: &Source, path: &KeyPath, url: &str) -> Result<()> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    match rest {
        Some(r) if !r.is_empty() && !r.contains(char::is_whitespace) => Ok(()),
        _ => Err(src.error_at(
            path,
            format!("expected an http:// or https:// URL, not {url:?}"),
        )),
    }
}

/// Environment variable names: the secret is read from `NAME` or `NAME_FILE`.
fn secret_name(src: &Source, path: &KeyPath, name: &str) -> Result<()> {
    let ok = name.starts_with(|c: char| c.is_ascii_uppercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(src.error_at(
            path,
            format!(
                "{name:?} is not a secret name (an environment variable name like RESTIC_PASSWORD)"
            ),
        ))
    }
}

fn host_name(src: &Source, path: &KeyPath, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if ok {
        Ok(())
    } else {
        Err(src.error_at(
            path,
            format!("{name:?} is not a DNS name like \"pim.example.com\""),
        ))
    }
}

fn ovh_section(src: &Source, ovh: &super::Ovh) -> Result<()> {
    let base = root().key("ovh");
    if !matches!(ovh.api.as_str(), "ovh-eu" | "ovh-ca" | "ovh-us") {
        http_url(src, &base.clone().key("api"), &ovh.api).map_err(|_| {
            src.error_at(
                &base.clone().key("api"),
                format!(
                    "expected ovh-eu, ovh-ca, ovh-us or an http(s):// URL, not {:?}",
                    ovh.api
                ),
            )
        })?;
    }
    country(src, &base.clone().key("subsidiary"), &ovh.subsidiary)?;
    if let Some(server) = &ovh.server {
        let p = base.clone().key("server");
        non_empty(src, &p.clone().key("plan"), &server.plan)?;
        non_empty(src, &p.clone().key("datacenter"), &server.datacenter)?;
        period(src, &p.clone().key("duration"), &server.duration)?;
    }
    for (i, ip) in ovh.ip.iter().enumerate() {
        let p = base.clone().key("ip").index(i);
        non_empty(src, &p.clone().key("plan"), &ip.plan)?;
        country(src, &p.clone().key("country"), &ip.country)?;
        period(src, &p.clone().key("duration"), &ip.duration)?;
    }
    non_empty(src, &base.clone().key("state_file"), &ovh.state_file)?;
    if ovh.poll_interval.std().is_zero() {
        return Err(src.error_at(&base.clone().key("poll_interval"), "must be more than zero"));
    }
    // OVH's edge network firewall filters IPv4 only.
    for (i, cidr) in ovh.firewall.admin_sources.iter().enumerate() {
        if !cidr.addr.is_ipv4() {
            return Err(src.error_at(
                &base.clone().key("firewall").key("admin_sources").index(i),
                format!("{cidr} is not IPv4: OVH's edge firewall filters IPv4 only"),
            ));
        }
    }
    Ok(())
}

fn country(src: &Source, path: &KeyPath, code: &str) -> Result<()> {
    if code.len() == 2 && code.chars().all(|c| c.is_ascii_uppercase()) {
        Ok(())
    } else {
        Err(src.error_at(
            path,
            format!("expected a two-letter country code like \"IE\", not {code:?}"),
        ))
    }
}

/// OVH commitments are ISO 8601 periods in months or years.
fn period(src: &Source, path: &KeyPath, p: &str) -> Result<()> {
    let ok = p
        .strip_prefix('P')
        .and_then(|r| r.strip_suffix(['M', 'Y']))
        .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
    if ok {
        Ok(())
    } else {
        Err(src.error_at(
            path,
            format!("expected a period like \"P1M\" or \"P12M\", not {p:?}"),
        ))
    }
}

fn env_section(src: &Source, project: &str, env: &Env) -> Result<()> {
    let base = root().key("env").key(env.name.as_str());
    check_name(src, &base, &env.name)?;
    if let Some(domain) = &env.domain {
        host_name(src, &base.clone().key("domain"), domain)?;
    }
    if let Some(zone) = &env.zone {
        host_name(src, &base.clone().key("zone"), zone)?;
        if let Some(domain) = &env.domain {
            if domain != zone && !domain.ends_with(&format!(".{zone}")) {
                return Err(src.error_at(
                    &base.clone().key("domain"),
                    format!("{domain:?} is not in zone {zone:?}"),
                ));
            }
        }
    }
    if let Some(vm) = &env.vm {
        let p = base.clone().key("vm");
        let name = vm
            .name
            .clone()
            .unwrap_or_else(|| format!("{project}-{}", env.name));
        let name_ok = (1..=64).contains(&name.len())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !name_ok {
            return Err(src.error_at(
                &p.clone().key("name"),
                format!("{name:?} is not a Hyper-V VM name (1 to 64 of A-Z a-z 0-9 . _ -)"),
            ));
        }
        if !(1..=240).contains(&vm.cpus) {
            return Err(src.error_at(
                &p.clone().key("cpus"),
                "expected 1 to 240 virtual processors",
            ));
        }
        // Hyper-V takes startup memory in multiples of 2 MiB.
        if vm.memory.bytes() < 512 << 20 || vm.memory.bytes() % (2 << 20) != 0 {
            return Err(src.error_at(
                &p.clone().key("memory"),
                "expected at least 512MiB, in multiples of 2MiB",
            ));
        }
        if vm.disk.bytes() < 1 << 30 {
            return Err(src.error_at(&p.clone().key("disk"), "expected at least 1GiB"));
        }
        if !vm.ip.contains(vm.gateway) || vm.ip.addr == vm.gateway {
            return Err(src.error_at(
                &p.clone().key("gateway"),
                format!("{} is not another address in {}", vm.gateway, vm.ip),
            ));
        }
    }
    for name in env.vars.keys() {
        let ok = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok {
            return Err(src.error_at(
                &base.clone().key("vars").key(name.as_str()),
                format!("{name:?} is not a variable name"),
            ));
        }
    }
    if let Some(db) = &env.database {
        let p = base.clone().key("database");
        non_empty(src, &p.clone().key("user"), &db.user)?;
        if let Some(s) = &db.password_secret {
            secret_name(src, &p.clone().key("password_secret"), s)?;
        }
    }
    for (i, vol) in env.volumes.iter().enumerate() {
        let p = base.clone().key("volumes").index(i);
        check_name(src, &p.clone().key("name"), &vol.name)?;
        if env.volumes[..i].iter().any(|v| v.name == vol.name) {
            return Err(src.error_at(&p.key("name"), format!("duplicate volume {:?}", vol.name)));
        }
        if !vol.path.is_absolute() {
            return Err(src.error_at(&p.key("path"), "expected an absolute path"));
        }
    }
    if (!env.dns.is_empty() || !env.waf.is_empty()) && env.zone.is_none() {
        return Err(src.error_at(
            &base.clone().key("zone"),
            "missing: dns and waf entries need the env's zone",
        ));
    }
    for (i, rec) in env.dns.iter().enumerate() {
        dns_record(src, &base.clone().key("dns").index(i), rec)?;
    }
    for (i, rule) in env.waf.iter().enumerate() {
        let p = base.clone().key("waf").index(i);
        non_empty(src, &p.clone().key("description"), &rule.description)?;
        non_empty(src, &p.clone().key("expression"), &rule.expression)?;
        // cf-sync matches rules to the zone's by description.
        if env.waf[..i]
            .iter()
            .any(|r| r.description == rule.description)
        {
            return Err(src.error_at(
                &p.key("description"),
                format!("duplicate WAF rule {:?}", rule.description),
            ));
        }
    }
    Ok(())
}

fn dns_record(src: &Source, p: &KeyPath, rec: &super::DnsRecord) -> Result<()> {
    let name_ok = rec.name == "@"
        || (!rec.name.is_empty()
            && rec.name.split('.').all(|l| {
                !l.is_empty()
                    && l.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '*')
            }));
    if !name_ok {
        return Err(src.error_at(
            &p.clone().key("name"),
            format!(
                "{:?} is not a record name relative to the zone (or \"@\")",
                rec.name
            ),
        ));
    }
    let content = p.clone().key("content");
    match rec.kind {
        DnsType::A if rec.content.parse::<std::net::Ipv4Addr>().is_err() => {
            return Err(src.error_at(&content, "expected an IPv4 address for an A record"));
        }
        DnsType::Aaaa if rec.content.parse::<std::net::Ipv6Addr>().is_err() => {
            return Err(src.error_at(&content, "expected an IPv6 address for an AAAA record"));
        }
        _ => non_empty(src, &content, &rec.content)?,
    }
    if rec.proxied && !rec.kind.proxiable() {
        return Err(src.error_at(
            &p.clone().key("proxied"),
            format!("a {} record cannot be proxied", rec.kind.as_str()),
        ));
    }
    if let Some(ttl) = rec.ttl {
        if ttl != 1 && !(60..=86400).contains(&ttl) {
            return Err(src.error_at(
                &p.clone().key("ttl"),
                "expected 1 (automatic) or 60 to 86400 seconds",
            ));
        }
    }
    let wants_priority = matches!(rec.kind, DnsType::Mx | DnsType::Srv);
    match (wants_priority, rec.priority) {
        (true, None) => Err(src.error_at(
            &p.clone().key("priority"),
            format!("required for a {} record", rec.kind.as_str()),
        )),
        (false, Some(_)) => Err(src.error_at(
            &p.clone().key("priority"),
            format!("not used by a {} record", rec.kind.as_str()),
        )),
        _ => Ok(()),
    }
}

fn backup_defaults(src: &Source, b: &BackupSettings) -> Result<()> {
    let p = root().key("backup");
    if b.password_secret.is_some() && b.password_file.is_some() {
        return Err(src.error_at(
            &p.key("password_file"),
            "set password_secret or password_file, not both",
        ));
    }
    Ok(())
}

fn merge_backup(
    src: &Source,
    project: &str,
    defaults: &BackupSettings,
    env: &Env,
) -> Result<Option<Backup>> {
    let own = &env.backup_settings;
    let env_path = root().key("env").key(env.name.as_str()).key("backup");
    let at = |level: Level, key: &str| match level {
        Level::Default => root().key("backup").key(key),
        Level::Env => env_path.clone().key(key),
    };
    let Some((repository, level)) = pick(&own.repository, &defaults.repository) else {
        if *own != BackupSettings::default() {
            return Err(src.error_at(
                &env_path.key("repository"),
                "missing: set a repository here or in [backup]",
            ));
        }
        return Ok(None);
    };
    let x = |s: &str| expand(s, project, env);
    let repository = x(repository);
    if repository.trim().is_empty() {
        return Err(src.error_at(&at(level, "repository"), "must not be empty"));
    }

    // password_secret and password_file are one setting: an env giving either replaces both.
    let (secret, file, level) = if own.password_secret.is_some() || own.password_file.is_some() {
        (&own.password_secret, &own.password_file, Level::Env)
    } else {
        (
            &defaults.password_secret,
            &defaults.password_file,
            Level::Default,
        )
    };
    let password = match (secret, file) {
        (Some(_), Some(_)) => {
            return Err(src.error_at(
                &at(level, "password_file"),
                "set password_secret or password_file, not both",
            ))
        }
        (Some(name), None) => {
            secret_name(src, &at(level, "password_secret"), name)?;
            BackupPassword::Secret(name.clone())
        }
        (None, Some(f)) => BackupPassword::File(PathBuf::from(x(&f.to_string_lossy()))),
        (None, None) => BackupPassword::Secret("RESTIC_PASSWORD".into()),
    };

    let keep = match pick(&own.keep, &defaults.keep) {
        Some((k, level)) if k.is_empty() => {
            return Err(src.error_at(
                &at(level, "keep"),
                "give at least one of last, hourly, daily, weekly, monthly",
            ))
        }
        Some((k, _)) => Some(*k),
        None => None,
    };
    // An empty string switches a default off in an env.
    let ping = match pick(&own.ping, &defaults.ping) {
        Some((p, _)) if p.is_empty() => None,
        Some((p, level)) => {
            let p = x(p);
            http_url(src, &at(level, "ping"), &p)?;
            Some(p)
        }
        None => None,
    };
    let metrics_dir = match pick(&own.metrics_dir, &defaults.metrics_dir) {
        Some((d, _)) if d.as_os_str().is_empty() => None,
        Some((d, _)) => Some(PathBuf::from(x(&d.to_string_lossy()))),
        None => None,
    };
    let host = match pick(&own.host, &defaults.host) {
        Some((h, level)) => {
            let h = x(h);
            non_empty(src, &at(level, "host"), &h)?;
            h
        }
        None => format!("{project}-{}", env.name),
    };
    let checksum_tables = match pick(&own.checksum_tables, &defaults.checksum_tables) {
        Some((tables, level)) => {
            for (i, t) in tables.iter().enumerate() {
                let valid = t
                    .split_once('.')
                    .is_some_and(|(schema, name)| !schema.is_empty() && !name.is_empty());
                if !valid {
                    return Err(src.error_at(
                        &at(level, "checksum_tables").index(i),
                        format!("{t:?}: expected \"schema.table\""),
                    ));
                }
            }
            tables.clone()
        }
        None => Vec::new(),
    };
    let volume_sample_pct = match pick(&own.volume_sample_pct, &defaults.volume_sample_pct) {
        Some((p, level)) if !(*p > 0.0 && *p <= 100.0) => {
            return Err(src.error_at(
                &at(level, "volume_sample_pct"),
                "expected a percentage above 0 and at most 100",
            ))
        }
        Some((p, _)) => *p,
        None => 100.0,
    };
    let incremental = match pick(&own.incremental, &defaults.incremental) {
        Some((i, level)) if i.full_every.std().is_zero() => {
            return Err(src.error_at(
                &at(level, "incremental").key("full_every"),
                "must be longer than 0s",
            ))
        }
        Some((i, _)) => Some(*i),
        None => None,
    };
    Ok(Some(Backup {
        repository,
        password,
        keep,
        ping,
        metrics_dir,
        host,
        checksum_tables,
        volume_sample_pct,
        incremental,
    }))
}

/// Validate every check, then expand it for each env it applies to and validate again (a
/// template can make a valid-looking value invalid, or need a value the env lacks).
fn checks(
    src: &Source,
    project: &str,
    envs: &[Env],
    specs: &[CheckSpec],
) -> Result<BTreeMap<String, Vec<CheckSpec>>> {
    let mut out: BTreeMap<String, Vec<CheckSpec>> =
        envs.iter().map(|e| (e.name.clone(), Vec::new())).collect();
    for (i, spec) in specs.iter().enumerate() {
        let p = root().key("check").index(i);
        spec.validate()
            .map_err(|e| src.error_at(&p.clone().key(e.field.as_str()), &e.message))?;
        if let Some(first) = specs[..i].iter().position(|s| s.name == spec.name) {
            return Err(src.error_at(
                &p.clone().key("name"),
                format!(
                    "duplicate check name {:?} (first at check[{first}])",
                    spec.name
                ),
            ));
        }
        for (k, name) in spec.envs.iter().enumerate() {
            if !envs.iter().any(|e| &e.name == name) {
                return Err(src.error_at(
                    &p.clone().key("envs").index(k),
                    format!("no env {name:?} (envs: {})", env_list(envs)),
                ));
            }
        }
        for env in envs
            .iter()
            .filter(|e| spec.envs.is_empty() || spec.envs.contains(&e.name))
        {
            let expanded = expand_check(src, &p, project, env, spec)?;
            if let Some(list) = out.get_mut(&env.name) {
                list.push(expanded);
            }
        }
    }
    Ok(out)
}

fn expand_check(
    src: &Source,
    p: &KeyPath,
    project: &str,
    env: &Env,
    spec: &CheckSpec,
) -> Result<CheckSpec> {
    let mut value =
        serde_json::to_value(spec).map_err(|e| src.error_at(p, format!("cannot expand: {e}")))?;
    if let Some(fields) = value.as_object_mut() {
        for (field, v) in fields.iter_mut().filter(|(k, _)| k.as_str() != "envs") {
            for (placeholder, have) in [
                ("{domain}", env.domain.is_some()),
                ("{zone}", env.zone.is_some()),
            ] {
                if !have && mentions(v, placeholder) {
                    let what = &placeholder[1..placeholder.len() - 1];
                    return Err(src.error_at(
                        &p.clone().key(field.as_str()),
                        format!("uses {placeholder} but env.{} has no {what}", env.name),
                    ));
                }
            }
            expand_strings(v, &|s| expand(s, project, env));
        }
    }
    let expanded: CheckSpec = serde_json::from_value(value)
        .map_err(|e| src.error_at(p, format!("in env {}: {e}", env.name)))?;
    expanded.validate().map_err(|e| {
        src.error_at(
            &p.clone().key(e.field.as_str()),
            format!("in env {}: {}", env.name, e.message),
        )
    })?;
    Ok(expanded)
}

fn mentions(v: &serde_json::Value, needle: &str) -> bool {
    match v {
        serde_json::Value::String(s) => s.contains(needle),
        serde_json::Value::Array(a) => a.iter().any(|v| mentions(v, needle)),
        serde_json::Value::Object(o) => o.values().any(|v| mentions(v, needle)),
        _ => false,
    }
}

fn expand_strings(v: &mut serde_json::Value, f: &dyn Fn(&str) -> String) {
    match v {
        serde_json::Value::String(s) => *s = f(s),
        serde_json::Value::Array(a) => a.iter_mut().for_each(|v| expand_strings(v, f)),
        serde_json::Value::Object(o) => o.values_mut().for_each(|v| expand_strings(v, f)),
        _ => {}
    }
}
