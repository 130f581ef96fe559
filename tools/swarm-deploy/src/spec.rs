//! One comparable view of a service, built either from the rendered compose definition or
//! from `docker service inspect`, so `diff` can say what a deploy would change without
//! deploying. Only what the operators care about is compared field by field
//! (image, env, replicas, labels, mounts, resources, update config); anything else that
//! changed shows up through the `pimops.spec` label, a hash of the whole rendered service.

use std::collections::BTreeMap;

use serde_json::{json, Value};

/// Labels swarm-deploy sets on every service.
pub const LABEL_TAG: &str = "pimops.tag";
pub const LABEL_COMMIT: &str = "pimops.commit";
pub const LABEL_BY: &str = "pimops.deployed-by";
pub const LABEL_SPEC: &str = "pimops.spec";

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ServiceView {
    pub image: String,
    pub env: BTreeMap<String, String>,
    /// `None`: global mode.
    pub replicas: Option<u64>,
    /// Service labels without Docker's own `com.docker.*` and without `pimops.deployed-by`
    /// (who deployed last is not a change to deploy).
    pub labels: BTreeMap<String, String>,
    /// `type:source:target[:ro]`, sorted.
    pub mounts: Vec<String>,
    pub resources: Resources,
    pub update: UpdateConfig,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Resources {
    pub limit_nano_cpus: i64,
    pub limit_memory: i64,
    pub reserve_nano_cpus: i64,
    pub reserve_memory: i64,
}

/// Swarm's update config with Swarm's defaults filled in, so an unset compose key and the
/// default Swarm reports compare equal.
#[derive(Debug, Clone, PartialEq)]
pub struct UpdateConfig {
    pub parallelism: u64,
    pub delay_ns: i64,
    pub failure_action: String,
    pub monitor_ns: i64,
    pub max_failure_ratio: f64,
    pub order: String,
}

impl Default for UpdateConfig {
    fn default() -> Self {
        UpdateConfig {
            parallelism: 1,
            delay_ns: 0,
            failure_action: "pause".into(),
            monitor_ns: 5_000_000_000,
            max_failure_ratio: 0.0,
            order: "stop-first".into(),
        }
    }
}

/// One difference, as a `change` record's fields.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldChange {
    pub field: &'static str,
    pub from: Value,
    pub to: Value,
}

impl ServiceView {
    /// What differs from `running` to `self` (the wanted state). Env values are not shown,
    /// only the names of the variables that change: they may carry credentials.
    pub fn changes_from(&self, running: &ServiceView) -> Vec<FieldChange> {
        let mut out = Vec::new();
        fn push(out: &mut Vec<FieldChange>, field: &'static str, from: Value, to: Value) {
            if from != to {
                out.push(FieldChange { field, from, to })
            }
        }
        push(&mut out, "image", json!(running.image), json!(self.image));
        if self.env != running.env {
            let mut keys: Vec<&String> = self
                .env
                .keys()
                .chain(running.env.keys())
                .filter(|k| self.env.get(*k) != running.env.get(*k))
                .collect();
            keys.sort();
            keys.dedup();
            out.push(FieldChange {
                field: "env",
                from: json!(null),
                to: json!({ "changed": keys }),
            });
        }
        push(
            &mut out,
            "replicas",
            json!(running.replicas),
            json!(self.replicas),
        );
        let spec_changed = self.labels.get(LABEL_SPEC) != running.labels.get(LABEL_SPEC);
        let strip = |l: &BTreeMap<String, String>| {
            let mut l = l.clone();
            l.remove(LABEL_SPEC);
            l
        };
        push(
            &mut out,
            "labels",
            json!(strip(&running.labels)),
            json!(strip(&self.labels)),
        );
        push(
            &mut out,
            "mounts",
            json!(running.mounts),
            json!(self.mounts),
        );
        push(
            &mut out,
            "resources",
            resources_json(&running.resources),
            resources_json(&self.resources),
        );
        push(
            &mut out,
            "update_config",
            update_json(&running.update),
            update_json(&self.update),
        );
        if out.is_empty() && spec_changed {
            out.push(FieldChange {
                field: "spec",
                from: json!(running.labels.get(LABEL_SPEC)),
                to: json!(self.labels.get(LABEL_SPEC)),
            });
        }
        out
    }

    /// The view of a service as `docker service inspect` shows it.
    pub fn from_inspect(v: &Value) -> ServiceView {
        let spec = &v["Spec"];
        let task = &spec["TaskTemplate"];
        let c = &task["ContainerSpec"];
        let image = c["Image"].as_str().unwrap_or_default();
        let image = image.split('@').next().unwrap_or_default().to_string();
        let env = c["Env"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).map(split_env).collect())
            .unwrap_or_default();
        let replicas = if spec["Mode"].get("Global").is_some() {
            None
        } else {
            Some(spec["Mode"]["Replicated"]["Replicas"].as_u64().unwrap_or(1))
        };
        let labels = spec["Labels"]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter(|(k, _)| !k.starts_with("com.docker.") && k.as_str() != LABEL_BY)
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect()
            })
            .unwrap_or_default();
        let mut mounts: Vec<String> = c["Mounts"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|m| {
                        mount_key(
                            m["Type"].as_str().unwrap_or("volume"),
                            m["Source"].as_str().unwrap_or_default(),
                            m["Target"].as_str().unwrap_or_default(),
                            m["ReadOnly"].as_bool().unwrap_or(false),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        mounts.sort();
        let r = &task["Resources"];
        let resources = Resources {
            limit_nano_cpus: r["Limits"]["NanoCPUs"].as_i64().unwrap_or(0),
            limit_memory: r["Limits"]["MemoryBytes"].as_i64().unwrap_or(0),
            reserve_nano_cpus: r["Reservations"]["NanoCPUs"].as_i64().unwrap_or(0),
            reserve_memory: r["Reservations"]["MemoryBytes"].as_i64().unwrap_or(0),
        };
        let u = &spec["UpdateConfig"];
        let d = UpdateConfig::default();
        let update = UpdateConfig {
            parallelism: u["Parallelism"].as_u64().unwrap_or(d.parallelism),
            delay_ns: u["Delay"].as_i64().unwrap_or(d.delay_ns),
            failure_action: u["FailureAction"]
                .as_str()
                .map(str::to_string)
                .unwrap_or(d.failure_action),
            monitor_ns: u["Monitor"].as_i64().unwrap_or(d.monitor_ns),
            max_failure_ratio: u["MaxFailureRatio"].as_f64().unwrap_or(d.max_failure_ratio),
            order: u["Order"].as_str().map(str::to_string).unwrap_or(d.order),
        };
        ServiceView {
            image,
            env,
            replicas,
            labels,
            mounts,
            resources,
            update,
        }
    }
}

pub fn mount_key(kind: &str, source: &str, target: &str, read_only: bool) -> String {
    let mut k = format!("{kind}:{source}:{target}");
    if read_only {
        k.push_str(":ro");
    }
    k
}

fn split_env(e: &str) -> (String, String) {
    match e.split_once('=') {
        Some((k, v)) => (k.to_string(), v.to_string()),
        None => (e.to_string(), String::new()),
    }
}

fn resources_json(r: &Resources) -> Value {
    json!({
        "limits": { "nano_cpus": r.limit_nano_cpus, "memory": r.limit_memory },
        "reservations": { "nano_cpus": r.reserve_nano_cpus, "memory": r.reserve_memory },
    })
}

fn update_json(u: &UpdateConfig) -> Value {
    json!({
        "parallelism": u.parallelism,
        "delay_ns": u.delay_ns,
        "failure_action": u.failure_action,
        "monitor_ns": u.monitor_ns,
        "max_failure_ratio": u.max_failure_ratio,
        "order": u.order,
    })
}

/// A Go duration as compose writes it (`10s`, `1m30s`, `500ms`), in nanoseconds.
pub fn go_duration_ns(s: &str) -> Option<i64> {
    let s = s.trim();
    if s == "0" {
        return Some(0);
    }
    let mut total: f64 = 0.0;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let n: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += n * mult;
    }
    Some(total as i64)
}

/// A compose memory size (`128M`, `1g`, `512mb`, `1073741824`) in bytes, binary multiples as
/// Docker reads them.
pub fn ram_bytes(s: &str) -> Option<i64> {
    let s = s.trim().to_ascii_lowercase();
    let num_len = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let n: f64 = s[..num_len].parse().ok()?;
    let mult: f64 = match s[num_len..].trim() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" | "tib" => 1024.0f64.powi(4),
        _ => return None,
    };
    Some((n * mult) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes() {
        assert_eq!(go_duration_ns("10s"), Some(10_000_000_000));
        assert_eq!(go_duration_ns("1m30s"), Some(90_000_000_000));
        assert_eq!(go_duration_ns("500ms"), Some(500_000_000));
        assert_eq!(go_duration_ns("0"), Some(0));
        assert_eq!(go_duration_ns("10"), None);
        assert_eq!(go_duration_ns("x"), None);
        assert_eq!(ram_bytes("128M"), Some(128 << 20));
        assert_eq!(ram_bytes("1g"), Some(1 << 30));
        assert_eq!(ram_bytes("512mb"), Some(512 << 20));
        assert_eq!(ram_bytes("1024"), Some(1024));
        assert_eq!(ram_bytes("lots"), None);
    }

    #[test]
    fn inspect_view_strips_digests_and_docker_labels() {
        let v = json!({"Spec": {
            "Labels": {"com.docker.stack.namespace": "s", "pimops.tag": "v1", "pimops.deployed-by": "ann"},
            "Mode": {"Replicated": {"Replicas": 2}},
            "TaskTemplate": {"ContainerSpec": {
                "Image": "app:v1@sha256:abc", "Env": ["A=1", "B=x=y"],
                "Mounts": [{"Type": "volume", "Source": "s_data", "Target": "/data"}]
            }}
        }});
        let view = ServiceView::from_inspect(&v);
        assert_eq!(view.image, "app:v1");
        assert_eq!(view.env["B"], "x=y");
        assert_eq!(view.replicas, Some(2));
        assert_eq!(view.labels.len(), 1);
        assert_eq!(view.mounts, vec!["volume:s_data:/data"]);
        assert_eq!(view.update, UpdateConfig::default());
        let mut wanted = view.clone();
        wanted.image = "app:v2".into();
        let changes = wanted.changes_from(&view);
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].field, "image");
    }
}
