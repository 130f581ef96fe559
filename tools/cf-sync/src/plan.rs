//! The plan: what an env's zone needs to equal the inventory, computed from one read of
//! the zone. Pure functions over [`ZoneState`], so `plan` and `apply` (which re-plans
//! against a fresh read) decide the same way.
//!
//! # Ownership
//!
//! A record is owned by an env when its comment is exactly [`marker`] (`cf-sync:prod`),
//! a WAF rule when its `ref` starts with [`rule_ref_prefix`]. Only owned objects are
//! updated or deleted; everything else (hand-made records, Worker routes, another env's
//! records in a shared zone, rules made in the dashboard) is counted as unmanaged and
//! never touched. Zone settings are not owned: only the ids the inventory lists are kept.

use pimops::cloudflare::{
    Client, DnsRecord as ApiRecord, Ruleset, Setting, Zone, CUSTOM_RULES_PHASE,
};
use pimops::inventory::{Env, WafAction, WafRule};
use pimops::output::Record;
use pimops::{Error, Result};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::normalize::Rec;
use crate::settings::ZoneSettings;

/// The comment that marks a record as owned by `env`.
pub fn marker(env: &str) -> String {
    format!("cf-sync:{env}")
}

/// The `ref` prefix of the WAF rules `env` owns.
pub fn rule_ref_prefix(env: &str) -> String {
    format!("cf-sync-{env}-")
}

/// The `ref` of `env`'s rule with this description (stable while the description is).
pub fn rule_ref(env: &str, description: &str) -> String {
    let digest = Sha256::digest(description.as_bytes());
    format!("{}{}", rule_ref_prefix(env), &hex::encode(digest)[..16])
}

/// A zone as read from the API.
#[derive(Debug, Clone)]
pub struct ZoneState {
    pub zone: Zone,
    pub records: Vec<ApiRecord>,
    pub ruleset: Option<Ruleset>,
    /// Read only when the inventory lists settings.
    pub settings: Option<Vec<Setting>>,
}

impl ZoneState {
    pub fn read(client: &Client, name: &str, with_settings: bool) -> Result<ZoneState> {
        let zone = client.zone(name)?;
        let records = client.dns_records(&zone.id)?;
        let ruleset = client.entrypoint(&zone.id, CUSTOM_RULES_PHASE)?;
        let settings = if with_settings {
            Some(client.settings(&zone.id)?)
        } else {
            None
        };
        log::debug!(
            "{name}: {} records, {} WAF custom rules",
            records.len(),
            ruleset.as_ref().map_or(0, |r| r.rules.len())
        );
        Ok(ZoneState {
            zone,
            records,
            ruleset,
            settings,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Dns,
    Waf,
    Setting,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Dns => "dns",
            Kind::Waf => "waf",
            Kind::Setting => "setting",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Action {
    Delete,
    Update,
    Create,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Delete => "delete",
        }
    }
}

/// One change of a plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub kind: Kind,
    pub action: Action,
    /// FQDN, rule description, or setting id.
    pub name: String,
    /// The API id of what is updated or deleted.
    pub id: Option<String>,
    pub before: Value,
    pub after: Value,
    /// DNS only: the desired record (create, update).
    pub rec: Option<Rec>,
}

impl Change {
    pub fn record(&self, env: &str, zone: &str) -> Record {
        let mut r = Record::new("change")
            .with("env", env)
            .with("zone", zone)
            .with("kind", self.kind.as_str())
            .with("action", self.action.as_str())
            .with("name", self.name.as_str());
        if let Some(id) = &self.id {
            r.set("id", id.as_str());
        }
        r.with("before", self.before.clone())
            .with("after", self.after.clone())
    }
}

/// What one env needs.
#[derive(Debug, Clone)]
pub struct EnvPlan {
    pub env: String,
    pub zone: String,
    pub delete: bool,
    pub changes: Vec<Change>,
    pub unchanged: usize,
    /// Records and rules cf-sync does not own for this env.
    pub unmanaged: usize,
    /// Owned but no longer in the inventory, kept because `--delete` was not given.
    pub orphaned: usize,
    /// Unowned records equal to one the inventory wants (`cf-sync adopt` takes them).
    pub adoptable: usize,
    pub owned_records: usize,
    pub zone_records: usize,
}

impl EnvPlan {
    pub fn count(&self, action: Action) -> usize {
        self.changes.iter().filter(|c| c.action == action).count()
    }

    pub fn summary(&self) -> Record {
        Record::new("summary")
            .with("env", self.env.as_str())
            .with("zone", self.zone.as_str())
            .with("creates", self.count(Action::Create))
            .with("updates", self.count(Action::Update))
            .with("deletes", self.count(Action::Delete))
            .with("unchanged", self.unchanged)
            .with("unmanaged", self.unmanaged)
            .with("orphaned", self.orphaned)
            .with("delete", self.delete)
    }

    /// Why applying this plan needs `--force`, if it does.
    pub fn needs_force(&self) -> Option<String> {
        let dns_big = self
            .changes
            .iter()
            .filter(|c| c.kind == Kind::Dns && c.action != Action::Create)
            .count();
        if let Some(c) = self.changes.iter().find(|c| {
            c.kind == Kind::Dns
                && c.name == self.zone
                && [&c.before, &c.after].iter().any(|v| v["type"] == "NS")
        }) {
            return Some(format!(
                "{} {}: changes the apex NS records ({}); give --force if that is intended",
                self.zone,
                self.env,
                c.action.as_str()
            ));
        }
        // More than 30% of the owned records, in a zone big enough for a ratio to mean
        // something (octoDNS's rule).
        if self.zone_records >= 10 && dns_big * 10 > self.owned_records * 3 {
            return Some(format!(
                "{} {}: {dns_big} of {} owned records would be updated or deleted (more than 30%); \
                 give --force if that is intended",
                self.zone, self.env, self.owned_records
            ));
        }
        None
    }
}

/// Plan `env` against `state`. `settings` are the zone settings this env keeps (empty when
/// another env of the same zone plans them).
pub fn plan_env(
    env: &Env,
    state: &ZoneState,
    settings: &ZoneSettings,
    delete: bool,
) -> Result<EnvPlan> {
    let zone = state.zone.name.clone();
    let mut plan = EnvPlan {
        env: env.name.clone(),
        zone: zone.clone(),
        delete,
        changes: Vec::new(),
        unchanged: 0,
        unmanaged: 0,
        orphaned: 0,
        adoptable: 0,
        owned_records: 0,
        zone_records: state.records.len(),
    };
    plan_dns(env, state, &mut plan);
    plan_waf(env, state, &mut plan);
    plan_settings(state, settings, &mut plan)?;
    Ok(plan)
}

fn plan_dns(env: &Env, state: &ZoneState, plan: &mut EnvPlan) {
    let mark = marker(&env.name);
    let (owned, unowned): (Vec<&ApiRecord>, Vec<&ApiRecord>) = state
        .records
        .iter()
        .partition(|r| r.comment.as_deref() == Some(mark.as_str()));
    plan.owned_records = owned.len();
    plan.unmanaged += unowned.len();
    let owned_n: Vec<Rec> = owned.iter().map(|r| Rec::from_api(r)).collect();
    let unowned_n: Vec<Rec> = unowned.iter().map(|r| Rec::from_api(r)).collect();
    let desired: Vec<Rec> = env
        .dns
        .iter()
        .map(|r| Rec::from_config(r, &plan.zone))
        .collect();

    let mut used = vec![false; owned.len()];
    let mut pair: Vec<Option<usize>> = vec![None; desired.len()];
    // Same name, type and content first; then the rest of a name+type pairs in order
    // (a changed address is an update, not a delete and a create).
    for exact in [true, false] {
        for (d, want) in desired.iter().enumerate() {
            if pair[d].is_some() {
                continue;
            }
            if !exact && unowned_n.iter().any(|u| u.same_identity(want)) {
                // Someone else's record is already what we want: leave it, suggest adopt.
                plan.adoptable += 1;
                pair[d] = Some(usize::MAX);
                continue;
            }
            let found = owned_n.iter().enumerate().position(|(i, have)| {
                !used[i]
                    && have.name == want.name
                    && have.kind == want.kind
                    && (!exact || have.content == want.content)
            });
            if let Some(i) = found {
                used[i] = true;
                pair[d] = Some(i);
            }
        }
    }
    for (d, want) in desired.iter().enumerate() {
        match pair[d] {
            Some(usize::MAX) => {}
            Some(i) if owned_n[i] == *want => plan.unchanged += 1,
            Some(i) => plan.changes.push(Change {
                kind: Kind::Dns,
                action: Action::Update,
                name: want.name.clone(),
                id: Some(owned[i].id.clone()),
                before: owned_n[i].to_json(),
                after: want.to_json(),
                rec: Some(want.clone()),
            }),
            None => plan.changes.push(Change {
                kind: Kind::Dns,
                action: Action::Create,
                name: want.name.clone(),
                id: None,
                before: Value::Null,
                after: want.to_json(),
                rec: Some(want.clone()),
            }),
        }
    }
    for (i, have) in owned_n.iter().enumerate() {
        if used[i] {
            continue;
        }
        if plan.delete {
            plan.changes.push(Change {
                kind: Kind::Dns,
                action: Action::Delete,
                name: have.name.clone(),
                id: Some(owned[i].id.clone()),
                before: have.to_json(),
                after: Value::Null,
                rec: None,
            });
        } else {
            plan.orphaned += 1;
        }
    }
}

/// A rule as cf-sync writes it.
pub fn rule_body(env: &str, rule: &WafRule) -> Value {
    let mut v = json!({
        "ref": rule_ref(env, &rule.description),
        "description": rule.description,
        "expression": rule.expression,
        "action": rule.action.as_str(),
        "enabled": rule.enabled,
    });
    if rule.action == WafAction::Skip {
        // The API requires what to skip; the inventory's skip means "the remaining custom
        // rules".
        v["action_parameters"] = json!({ "ruleset": "current" });
    }
    v
}

/// The compared part of a rule.
fn rule_view(v: &Value) -> Value {
    json!({
        "expression": v["expression"],
        "action": v["action"],
        "enabled": v.get("enabled").cloned().unwrap_or(Value::Bool(true)),
    })
}

fn plan_waf(env: &Env, state: &ZoneState, plan: &mut EnvPlan) {
    let prefix = rule_ref_prefix(&env.name);
    let rules: &[Value] = state.ruleset.as_ref().map_or(&[], |r| &r.rules);
    let owned: Vec<&Value> = rules
        .iter()
        .filter(|r| r["ref"].as_str().is_some_and(|x| x.starts_with(&prefix)))
        .collect();
    plan.unmanaged += rules.len() - owned.len();
    let mut seen = Vec::new();
    for rule in &env.waf {
        let body = rule_body(&env.name, rule);
        let want = rule_view(&body);
        match owned.iter().find(|r| r["ref"] == body["ref"]) {
            Some(have) => {
                seen.push(body["ref"].clone());
                if rule_view(have) == want {
                    plan.unchanged += 1;
                } else {
                    plan.changes.push(Change {
                        kind: Kind::Waf,
                        action: Action::Update,
                        name: rule.description.clone(),
                        id: have["id"].as_str().map(str::to_string),
                        before: rule_view(have),
                        after: want,
                        rec: None,
                    });
                }
            }
            None => plan.changes.push(Change {
                kind: Kind::Waf,
                action: Action::Create,
                name: rule.description.clone(),
                id: None,
                before: Value::Null,
                after: want,
                rec: None,
            }),
        }
    }
    for have in owned.iter().filter(|r| !seen.contains(&r["ref"])) {
        if plan.delete {
            plan.changes.push(Change {
                kind: Kind::Waf,
                action: Action::Delete,
                name: have["description"].as_str().unwrap_or_default().to_string(),
                id: have["id"].as_str().map(str::to_string),
                before: rule_view(have),
                after: Value::Null,
                rec: None,
            });
        } else {
            plan.orphaned += 1;
        }
    }
}

fn plan_settings(state: &ZoneState, settings: &ZoneSettings, plan: &mut EnvPlan) -> Result<()> {
    if settings.is_empty() {
        return Ok(());
    }
    let current = state.settings.as_deref().unwrap_or(&[]);
    for (id, want) in settings {
        let Some(have) = current.iter().find(|s| s.id == *id) else {
            return Err(Error::config(format!(
                "{}: zone {} has no setting {id:?}",
                want.from, plan.zone
            )));
        };
        if have.value == want.value {
            plan.unchanged += 1;
        } else {
            plan.changes.push(Change {
                kind: Kind::Setting,
                action: Action::Update,
                name: id.clone(),
                id: None,
                before: have.value.clone(),
                after: want.value.clone(),
                rec: None,
            });
        }
    }
    Ok(())
}
