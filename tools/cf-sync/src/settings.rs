//! The zone settings cf-sync keeps. Each env wants `[cloudflare].settings` with its own
//! `[env.E.cloudflare].settings` over them, key by key; a zone gets the union of what its
//! envs want. Envs sharing a zone must agree on every setting they both want, or the zone
//! would flip between them on every apply: that is a configuration error, found before any
//! API call.

use std::collections::BTreeMap;

use pimops::inventory::{Env, Inventory};
use pimops::{Error, Result};
use serde_json::Value;

/// One setting a zone should have, and where the inventory says so.
#[derive(Debug, Clone, PartialEq)]
pub struct Wanted {
    pub value: Value,
    /// The (first) env that wants it.
    pub env: String,
    /// The inventory key it comes from: `env.prod.cloudflare.settings.ssl` or
    /// `cloudflare.settings.ssl`.
    pub from: String,
}

/// Setting id → what the zone should have.
pub type ZoneSettings = BTreeMap<String, Wanted>;

/// What `env` wants, with where each value comes from.
pub fn of_env(inv: &Inventory, env: &Env) -> ZoneSettings {
    env.cloudflare
        .settings_over(&inv.cloudflare().settings)
        .into_iter()
        .map(|(id, value)| {
            let from = if env.cloudflare.settings.contains_key(&id) {
                format!("env.{}.cloudflare.settings.{id}", env.name)
            } else {
                format!("cloudflare.settings.{id}")
            };
            (
                id,
                Wanted {
                    value,
                    env: env.name.clone(),
                    from,
                },
            )
        })
        .collect()
}

/// Every zone's settings, from every env with a zone (not only the selected ones: a zone's
/// settings are the same whichever of its envs is synced).
pub fn by_zone(inv: &Inventory) -> Result<BTreeMap<String, ZoneSettings>> {
    let mut zones: BTreeMap<String, ZoneSettings> = BTreeMap::new();
    for env in inv.envs() {
        let Some(zone) = env.zone.as_deref() else {
            continue;
        };
        let merged = zones.entry(zone.to_string()).or_default();
        for (id, want) in of_env(inv, env) {
            match merged.get(&id) {
                Some(have) if have.value != want.value => {
                    return Err(Error::config(format!(
                        "{}: envs {} and {} share zone {zone} but disagree on its setting {id}: \
                         {} wants {} ({}), {} wants {} ({}); envs sharing a zone must agree on \
                         its settings",
                        inv.file(),
                        have.env,
                        want.env,
                        have.env,
                        have.value,
                        have.from,
                        want.env,
                        want.value,
                        want.from
                    )));
                }
                Some(_) => {}
                None => {
                    merged.insert(id, want);
                }
            }
        }
    }
    Ok(zones)
}
