//! What a deploy would change: the rendered stack against what runs on the Swarm, per
//! service, config, secret and network. `diff` prints it; `deploy` acts on it.

use std::collections::{BTreeMap, BTreeSet};

use pimops::output::Record;
use pimops::Result;
use serde_json::{json, Value};

use crate::docker::Docker;
use crate::render::{Object, ObjectKind, Rendered};
use crate::spec::ServiceView;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceAction {
    Create,
    Update,
    Remove,
}

pub struct ServiceChange {
    pub name: String,
    pub action: ServiceAction,
    pub records: Vec<Record>,
}

pub struct Plan {
    pub services: Vec<ServiceChange>,
    /// Indexes into `Rendered::objects` of configs and secrets that do not exist yet.
    pub missing_objects: Vec<usize>,
    pub missing_networks: Vec<String>,
    /// What runs now, by service name (the spec a rollback returns to).
    pub running: BTreeMap<String, Value>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
            && self.missing_objects.is_empty()
            && self.missing_networks.is_empty()
    }

    /// Services this deploy creates or updates (the ones to watch and roll back).
    pub fn changed(&self) -> impl Iterator<Item = &ServiceChange> {
        self.services
            .iter()
            .filter(|s| s.action != ServiceAction::Remove)
    }

    /// Every change as `change` records, in a stable order.
    pub fn records(&self, rendered: &Rendered) -> Vec<Record> {
        let mut out = Vec::new();
        for n in &self.missing_networks {
            out.push(object_record("network", n, "create"));
        }
        for &i in &self.missing_objects {
            let o: &Object = &rendered.objects[i];
            out.push(object_record(o.kind.as_str(), &o.name, "create"));
        }
        for s in &self.services {
            out.extend(s.records.iter().cloned());
        }
        out
    }
}

fn object_record(kind: &str, name: &str, action: &str) -> Record {
    Record::new("change")
        .with("kind", kind)
        .with("name", name)
        .with("action", action)
}

/// Compare `rendered` with the Swarm `docker` talks to.
pub fn plan(docker: &Docker, rendered: &Rendered) -> Result<Plan> {
    let expected: Vec<String> = rendered.services.iter().map(|s| s.name.clone()).collect();
    let running: BTreeMap<String, Value> = docker
        .services_expecting(&rendered.stack, &expected)?
        .into_iter()
        .filter_map(|s| Some((s["Spec"]["Name"].as_str()?.to_string(), s)))
        .collect();
    let mut services = Vec::new();
    for want in &rendered.services {
        match running.get(&want.name) {
            None => services.push(ServiceChange {
                name: want.name.clone(),
                action: ServiceAction::Create,
                records: vec![Record::new("change")
                    .with("kind", "service")
                    .with("name", want.name.as_str())
                    .with("action", "create")
                    .with("image", want.view.image.as_str())
                    .with("replicas", json!(want.view.replicas))],
            }),
            Some(now) => {
                let changes = want.view.changes_from(&ServiceView::from_inspect(now));
                if !changes.is_empty() {
                    services.push(ServiceChange {
                        name: want.name.clone(),
                        action: ServiceAction::Update,
                        records: changes
                            .into_iter()
                            .map(|c| {
                                Record::new("change")
                                    .with("kind", "service")
                                    .with("name", want.name.as_str())
                                    .with("action", "update")
                                    .with("field", c.field)
                                    .with("from", c.from)
                                    .with("to", c.to)
                            })
                            .collect(),
                    });
                }
            }
        }
    }
    for name in running.keys() {
        if rendered.service(name).is_none() {
            services.push(ServiceChange {
                name: name.clone(),
                action: ServiceAction::Remove,
                records: vec![Record::new("change")
                    .with("kind", "service")
                    .with("name", name.as_str())
                    .with("action", "remove")],
            });
        }
    }
    // Swarm refuses to remove a config, secret or network a service uses, so when every
    // service already runs as wanted, what they reference exists: the objects and networks
    // are only listed when some service changes or an object is referenced by none.
    let referenced = |name: &str| {
        rendered.services.iter().any(|s| {
            s.configs.iter().any(|c| c == name)
                || s.secrets.iter().any(|(n, _)| n == name)
                || s.networks.iter().any(|n| n == name)
        })
    };
    let all_referenced = rendered.objects.iter().all(|o| referenced(&o.name))
        && rendered.networks.iter().all(|n| referenced(n));
    let (missing_objects, missing_networks) = if services.is_empty() && all_referenced {
        (Vec::new(), Vec::new())
    } else {
        missing(docker, rendered)?
    };
    Ok(Plan {
        services,
        missing_objects,
        missing_networks,
        running,
    })
}

fn joined<T>(h: std::thread::ScopedJoinHandle<'_, Result<T>>) -> Result<T> {
    h.join()
        .unwrap_or_else(|_| Err(pimops::Error::failed("a docker query panicked")))
}

/// Configs and secrets (indexes into `rendered.objects`) and networks that do not exist yet,
/// listed concurrently.
fn missing(docker: &Docker, rendered: &Rendered) -> Result<(Vec<usize>, Vec<String>)> {
    let kinds: BTreeSet<ObjectKind> = rendered.objects.iter().map(|o| o.kind).collect();
    let (objects, networks) = std::thread::scope(|s| {
        let objects: Vec<_> = kinds
            .iter()
            .map(|&k| (k, s.spawn(move || docker.object_names(k))))
            .collect();
        let networks = docker.network_names();
        let objects: Vec<(ObjectKind, Result<BTreeSet<String>>)> =
            objects.into_iter().map(|(k, h)| (k, joined(h))).collect();
        (objects, networks)
    });
    let mut existing: BTreeMap<ObjectKind, BTreeSet<String>> = BTreeMap::new();
    for (k, names) in objects {
        existing.insert(k, names?);
    }
    let missing_objects = rendered
        .objects
        .iter()
        .enumerate()
        .filter(|(_, o)| !existing.get(&o.kind).is_some_and(|n| n.contains(&o.name)))
        .map(|(i, _)| i)
        .collect();
    let networks = networks?;
    let missing_networks = rendered
        .networks
        .iter()
        .filter(|n| !networks.contains(*n))
        .cloned()
        .collect();
    Ok((missing_objects, missing_networks))
}
