//! Carrying out an env's plan: DNS through the batch endpoint (chunked at the plan's
//! per-batch limit, deletes → patches → posts), WAF rules through one PUT of the
//! entrypoint (or its creation) that keeps every rule cf-sync does not own as it was read,
//! settings by PATCH.

use pimops::cloudflare::{Batch, Client, RecordId, Ruleset, CUSTOM_RULES_PHASE};
use pimops::inventory::Env;
use pimops::Result;
use serde_json::{json, Map, Value};

use crate::normalize::Rec;
use crate::plan::{marker, rule_body, rule_ref_prefix, Action, EnvPlan, Kind, ZoneState};

/// Apply `plan` (made from `state`) to the zone; `state.ruleset` is updated to what the
/// API returned so that a second env of the same zone builds on it.
pub fn apply_env(
    client: &Client,
    env: &Env,
    plan: &EnvPlan,
    state: &mut ZoneState,
    batch_limit: usize,
) -> Result<()> {
    let zone_id = state.zone.id.clone();
    let mut batch = Batch::default();
    for c in plan.changes.iter().filter(|c| c.kind == Kind::Dns) {
        match (c.action, &c.id, &c.rec) {
            (Action::Delete, Some(id), _) => batch.deletes.push(RecordId { id: id.clone() }),
            (Action::Update, Some(id), Some(rec)) => {
                let mut body = record_body(rec);
                body.insert("id".into(), json!(id));
                batch.patches.push(Value::Object(body));
            }
            (Action::Create, _, Some(rec)) => {
                let mut body = record_body(rec);
                body.insert("name".into(), json!(rec.name));
                body.insert("type".into(), json!(rec.kind));
                body.insert("comment".into(), json!(marker(&env.name)));
                batch.posts.push(Value::Object(body));
            }
            _ => {}
        }
    }
    let chunks = batch.chunks(batch_limit);
    let n = chunks.len();
    for (i, chunk) in chunks.into_iter().enumerate() {
        log::info!(
            "{} ({}): DNS batch {}/{n}: {} deletes, {} updates, {} creates",
            plan.zone,
            env.name,
            i + 1,
            chunk.deletes.len(),
            chunk.patches.len(),
            chunk.posts.len()
        );
        client.batch(&zone_id, &chunk).map_err(|e| {
            // A refusal is an answer: the batch is one transaction and was not applied. No
            // answer (a 5xx after retries, a timeout) says nothing: it may have been.
            let outcome = if e.kind() == pimops::ErrorKind::Unavailable {
                "no answer: Cloudflare may or may not have applied it; `cf-sync plan` shows the zone as it is"
            } else {
                "one transaction: not applied"
            };
            e.context(format!(
                "{} ({}): DNS batch {}/{n} ({outcome}{})",
                plan.zone,
                env.name,
                i + 1,
                if i > 0 {
                    "; the batches before it were"
                } else {
                    ""
                }
            ))
        })?;
    }

    if plan.changes.iter().any(|c| c.kind == Kind::Waf) {
        let rules = merged_rules(env, state.ruleset.as_ref(), plan.delete);
        let rs = match &state.ruleset {
            Some(_) => client.put_entrypoint(&zone_id, CUSTOM_RULES_PHASE, &rules)?,
            None => client.create_entrypoint(&zone_id, CUSTOM_RULES_PHASE, &rules)?,
        };
        log::info!(
            "{} ({}): WAF custom rules now at version {}",
            plan.zone,
            env.name,
            rs.version
        );
        state.ruleset = Some(rs);
    }

    for c in plan.changes.iter().filter(|c| c.kind == Kind::Setting) {
        client.patch_setting(&zone_id, &c.name, &c.after)?;
    }
    Ok(())
}

/// The fields of a record that a create or an update sends.
fn record_body(rec: &Rec) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("content".into(), json!(rec.content));
    m.insert("proxied".into(), json!(rec.proxied));
    m.insert("ttl".into(), json!(rec.ttl));
    if let Some(p) = rec.priority {
        m.insert("priority".into(), json!(p));
    }
    m
}

/// The entrypoint's new rule list: every rule in its place, `env`'s own replaced by the
/// inventory's (or dropped when deleted), the new ones appended. Rules of other owners
/// are sent back as read, minus the fields the API sets itself.
fn merged_rules(env: &Env, current: Option<&Ruleset>, delete: bool) -> Vec<Value> {
    let prefix = rule_ref_prefix(&env.name);
    let wanted: Vec<Value> = env.waf.iter().map(|r| rule_body(&env.name, r)).collect();
    let mut placed = vec![false; wanted.len()];
    let mut out = Vec::new();
    for rule in current.map_or(&[][..], |r| &r.rules[..]) {
        let mut rule = rule.clone();
        if let Some(m) = rule.as_object_mut() {
            m.remove("version");
            m.remove("last_updated");
        }
        let ours = rule["ref"].as_str().is_some_and(|r| r.starts_with(&prefix));
        if !ours {
            out.push(rule);
            continue;
        }
        match wanted.iter().position(|w| w["ref"] == rule["ref"]) {
            Some(i) => {
                placed[i] = true;
                let mut w = wanted[i].clone();
                w["id"] = rule["id"].clone();
                out.push(w);
            }
            None if delete => {}
            None => out.push(rule),
        }
    }
    out.extend(
        wanted
            .into_iter()
            .zip(placed)
            .filter(|(_, p)| !p)
            .map(|(w, _)| w),
    );
    out
}
