//! `adopt`: mark existing records that equal one the inventory wants (same name, type and
//! content) as owned by the env, so later plans manage them instead of counting them as
//! unmanaged. Records another cf-sync env owns are never taken.

use pimops::cloudflare::{Batch, Client};
use pimops::inventory::{Env, Inventory};
use pimops::output::{Output, Record};
use pimops::Result;
use serde_json::json;

use crate::normalize::Rec;
use crate::plan::{marker, ZoneState};

pub fn run(
    client: &Client,
    inv: &Inventory,
    envs: &[&Env],
    dry_run: bool,
    out: &mut Output,
) -> Result<()> {
    for env in envs {
        let Some(zone) = env.zone.as_deref() else {
            continue;
        };
        let state = ZoneState::read(client, zone, false)?;
        let mark = marker(&env.name);
        let owned: Vec<Rec> = state
            .records
            .iter()
            .filter(|r| r.comment.as_deref() == Some(mark.as_str()))
            .map(Rec::from_api)
            .collect();
        let mut batch = Batch::default();
        let mut taken: Vec<&str> = Vec::new();
        for want in env.dns.iter().map(|r| Rec::from_config(r, zone)) {
            if owned.iter().any(|o| o.same_identity(&want)) {
                continue;
            }
            let found = state.records.iter().find(|r| {
                !r.comment
                    .as_deref()
                    .is_some_and(|c| c.starts_with("cf-sync:"))
                    && !taken.contains(&r.id.as_str())
                    && Rec::from_api(r).same_identity(&want)
            });
            let Some(r) = found else { continue };
            taken.push(&r.id);
            let rec = Record::new("change")
                .with("env", env.name.as_str())
                .with("zone", zone)
                .with("kind", "dns")
                .with("action", "adopt")
                .with("name", want.name.as_str())
                .with("id", r.id.as_str())
                .with("before", json!({ "comment": r.comment }))
                .with("after", json!({ "comment": mark }));
            out.emit(&rec, |_| {
                format!("* ADOPT dns {} {}", want.name, want.human())
            })?;
            batch.patches.push(json!({ "id": r.id, "comment": mark }));
        }
        let n = batch.len();
        if !dry_run && n > 0 {
            for chunk in batch.chunks(inv.cloudflare().batch_limit.get()) {
                client.batch(&state.zone.id, &chunk)?;
            }
        }
        let summary = Record::new("summary")
            .with("env", env.name.as_str())
            .with("zone", zone)
            .with("adopted", if dry_run { 0 } else { n })
            .with("adoptable", n)
            .with("dry_run", dry_run);
        out.emit(&summary, |_| {
            if dry_run {
                format!("{zone} ({}): {n} record(s) would be adopted", env.name)
            } else {
                format!("{zone} ({}): {n} record(s) adopted", env.name)
            }
        })?;
    }
    Ok(())
}
