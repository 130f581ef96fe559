//! `ips`: Cloudflare's IP ranges from `/ips`, for allowing only Cloudflare at the origin
//! (the OVH edge firewall, Traefik's ipAllowList, nginx real-IP, nftables).
//!
//! The last answer is cached with its etag. When the API cannot be reached the cached
//! ranges are used (with a warning): an allow-list must not be emptied by an outage. An
//! answer with no ranges is refused for the same reason.

use std::path::{Path, PathBuf};

use pimops::cli::CommonArgs;
use pimops::cloudflare::{Client, IpRanges};
use pimops::error::io_reason;
use pimops::inventory::Inventory;
use pimops::output::{Output, Record};
use pimops::{Error, ErrorKind, Result};

use crate::args::{IpsArgs, IpsFormat};

pub fn run(common: &CommonArgs, a: &IpsArgs, out: &mut Output) -> Result<()> {
    let api = api_base(common)?;
    let cache = a.cache.clone().or_else(default_cache);
    let ranges = fetch(&api, cache.as_deref())?;
    let text = render(a.format, &ranges);
    match &a.out {
        Some(path) => write_if_changed(path, &text),
        None if a.format == IpsFormat::Json => {
            let rec = Record::new("ips")
                .with("ipv4_cidrs", ranges.ipv4_cidrs.clone())
                .with("ipv6_cidrs", ranges.ipv6_cidrs.clone())
                .with("etag", ranges.etag.as_str());
            out.json(&rec)
        }
        None => out.text(&text),
    }
}

/// The API base: the inventory's when there is one (given, in $PIMOPS_CONFIG, or
/// ./infra.toml), else Cloudflare's; `/ips` needs no account, so no inventory is needed.
fn api_base(common: &CommonArgs) -> Result<String> {
    let path = common.config_path();
    let named = common.config.is_some() || std::env::var_os("PIMOPS_CONFIG").is_some();
    if named || path.exists() {
        Ok(Inventory::load(&path)?.cloudflare().api.clone())
    } else {
        Ok(pimops::inventory::Cloudflare::default().api)
    }
}

fn default_cache() -> Option<PathBuf> {
    let base = match std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(std::env::var_os("HOME")?).join(".cache"),
    };
    Some(base.join("pimops").join("cloudflare-ips.json"))
}

fn fetch(api: &str, cache: Option<&Path>) -> Result<IpRanges> {
    let cached: Option<IpRanges> = cache
        .and_then(|p| std::fs::read(p).ok())
        .and_then(|b| serde_json::from_slice(&b).ok());
    let fresh = Client::new(api, None).ips().and_then(|r| {
        if r.ipv4_cidrs.is_empty() && r.ipv6_cidrs.is_empty() {
            Err(Error::failed(
                "cloudflare: /ips returned no ranges: refusing to write an empty allow-list",
            ))
        } else {
            Ok(r)
        }
    });
    match (fresh, cached) {
        (Ok(r), cached) => {
            if let Some(p) =
                cache.filter(|_| cached.as_ref().is_none_or(|c| c.etag != r.etag || *c != r))
            {
                // The cache is a convenience: failing to write it is only a warning.
                if let Err(e) = write_atomic(p, &serde_json::to_vec(&r).unwrap_or_default()) {
                    log::warn!("{e}");
                }
            }
            Ok(r)
        }
        (Err(e), Some(c)) if matches!(e.kind(), ErrorKind::Unavailable | ErrorKind::Temporary) => {
            log::warn!("{e}; using the cached ranges (etag {})", c.etag);
            Ok(c)
        }
        (Err(e), _) => Err(e),
    }
}

/// The ranges in `format` (newline-terminated).
pub fn render(format: IpsFormat, r: &IpRanges) -> String {
    let all = || r.ipv4_cidrs.iter().chain(&r.ipv6_cidrs);
    let header = format!(
        "Cloudflare's IP ranges (etag {}), written by cf-sync ips: do not edit",
        r.etag
    );
    let mut s = String::new();
    match format {
        IpsFormat::Cidrs => all().for_each(|c| s.push_str(&format!("{c}\n"))),
        IpsFormat::List => {
            s = all().map(String::as_str).collect::<Vec<_>>().join(",");
            s.push('\n');
        }
        IpsFormat::Json => {
            s = serde_json::to_string(r).unwrap_or_default();
            s.push('\n');
        }
        IpsFormat::Traefik => {
            s.push_str(&format!("# {header}\nhttp:\n  middlewares:\n    cloudflare-only:\n      ipAllowList:\n        sourceRange:\n"));
            all().for_each(|c| s.push_str(&format!("          - \"{c}\"\n")));
        }
        IpsFormat::Nginx => {
            s.push_str(&format!("# {header}\n"));
            all().for_each(|c| s.push_str(&format!("set_real_ip_from {c};\n")));
            s.push_str("real_ip_header CF-Connecting-IP;\n");
        }
        IpsFormat::Nftables => {
            s.push_str(&format!("# {header}\n"));
            for (name, list) in [
                ("cloudflare_ipv4", &r.ipv4_cidrs),
                ("cloudflare_ipv6", &r.ipv6_cidrs),
            ] {
                s.push_str(&format!("define {name} = {{ {} }}\n", list.join(", ")));
            }
        }
    }
    s
}

fn write_if_changed(path: &Path, text: &str) -> Result<()> {
    if std::fs::read_to_string(path).is_ok_and(|old| old == text) {
        log::info!("{}: unchanged", path.display());
        return Ok(());
    }
    write_atomic(path, text.as_bytes())?;
    log::info!("{}: written", path.display());
    Ok(())
}

/// Write through a temp file and a rename, so a reader never sees half a file.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let fail = |e: std::io::Error| {
        Error::failed(format!(
            "{}: cannot write: {}",
            path.display(),
            io_reason(&e)
        ))
    };
    pimops::atomic_file::write(path, bytes, None).map_err(fail)
}
