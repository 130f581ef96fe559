//! Plans on stdout: JSON Lines (`change` records, then a `summary` per env), or for
//! humans dnscontrol's `+ CREATE`, `± MODIFY old -> new`, `- DELETE` lines and octoDNS's
//! `Creates=…, Updates=…` summary.

use pimops::output::{Output, Record};
use pimops::Result;
use serde_json::Value;

use crate::plan::{Action, EnvPlan, Kind};

/// Write `plan`; `applied` marks the output of `apply`.
pub fn plan(out: &mut Output, plan: &EnvPlan, applied: bool) -> Result<()> {
    if !out.is_json() {
        out.text(&format!("{} ({})", plan.zone, plan.env))?;
    }
    for c in &plan.changes {
        let rec = c.record(&plan.env, &plan.zone);
        out.emit(&rec, |_| {
            let what = |v: &Value| describe(c.kind, v);
            match c.action {
                Action::Create => {
                    format!("+ CREATE {} {} {}", c.kind.as_str(), c.name, what(&c.after))
                }
                Action::Update => format!(
                    "± MODIFY {} {} {} -> {}",
                    c.kind.as_str(),
                    c.name,
                    what(&c.before),
                    what(&c.after)
                ),
                Action::Delete => format!(
                    "- DELETE {} {} {}",
                    c.kind.as_str(),
                    c.name,
                    what(&c.before)
                ),
            }
        })?;
    }
    let mut summary = plan.summary();
    if applied {
        summary.set("applied", true);
    }
    out.emit(&summary, |r| human_summary(r, applied))
}

fn human_summary(r: &Record, applied: bool) -> String {
    let n = |k: &str| r.get(k).and_then(Value::as_u64).unwrap_or(0);
    format!(
        "{}Creates={}, Updates={}, Deletes={}, Unchanged={}, Unmanaged={}, Orphaned={}",
        if applied { "applied: " } else { "" },
        n("creates"),
        n("updates"),
        n("deletes"),
        n("unchanged"),
        n("unmanaged"),
        n("orphaned")
    )
}

/// One value of a change, on one line.
fn describe(kind: Kind, v: &Value) -> String {
    match kind {
        Kind::Dns => {
            let mut s = format!(
                "{} {}",
                v["type"].as_str().unwrap_or("?"),
                v["content"].as_str().unwrap_or("?")
            );
            if let Some(p) = v["priority"].as_u64() {
                s.push_str(&format!(" prio {p}"));
            }
            if v["proxied"] == Value::Bool(true) {
                s.push_str(" proxied");
            } else if let Some(t) = v["ttl"].as_u64().filter(|t| *t != 1) {
                s.push_str(&format!(" ttl {t}"));
            }
            s
        }
        Kind::Waf => format!(
            "{}{} if {}",
            v["action"].as_str().unwrap_or("?"),
            if v["enabled"] == Value::Bool(false) {
                " (disabled)"
            } else {
                ""
            },
            v["expression"].as_str().unwrap_or("?")
        ),
        Kind::Setting => v.to_string(),
    }
}
