//! The stack file as it is deployed: the env's compose file with variables substituted,
//! configs and secrets turned into content-hash-named external objects (created by
//! swarm-deploy before the stack deploy, so the file can go over stdin and nothing secret
//! is written anywhere), images checked to be pinned, and pimops labels on every service.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use pimops::inventory::{Env, Inventory};
use pimops::secrets::Secret;
use pimops::{Error, Result};
use serde_json::Value as Json;
use serde_yaml_ng::{Mapping, Value};
use sha2::{Digest, Sha256};

use crate::interpolate::{self, Problem};
use crate::spec::{self, Resources, ServiceView, UpdateConfig};

/// Who and what is deployed.
#[derive(Debug, Clone)]
pub struct Meta {
    pub tag: String,
    pub commit: String,
    pub by: String,
}

/// A config or a secret the stack needs, named by its content's hash.
pub struct Object {
    pub kind: ObjectKind,
    /// The key under top-level `configs:` / `secrets:`.
    pub key: String,
    /// `<stack>_<key>_<sha256[:12]>`.
    pub name: String,
    pub data: ObjectData,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ObjectKind {
    Config,
    Secret,
}

impl ObjectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::Config => "config",
            ObjectKind::Secret => "secret",
        }
    }
}

pub enum ObjectData {
    Plain(Vec<u8>),
    Secret(Secret),
}

impl ObjectData {
    pub fn bytes(&self) -> &[u8] {
        match self {
            ObjectData::Plain(b) => b,
            ObjectData::Secret(s) => s.expose().as_bytes(),
        }
    }
}

/// A wanted service: its compose definition and the view `diff` compares.
pub struct WantedService {
    /// `<stack>_<key>`.
    pub name: String,
    pub key: String,
    pub definition: Value,
    pub view: ServiceView,
    /// Whether the image has a HEALTHCHECK in the compose file (the image's own is seen on
    /// the tasks).
    pub networks: Vec<String>,
    /// Secret references: (hashed secret name, target inside the container).
    pub secrets: Vec<(String, String)>,
    /// Hashed names of the configs it mounts.
    pub configs: Vec<String>,
}

pub struct Rendered {
    pub stack: String,
    pub doc: Value,
    pub objects: Vec<Object>,
    pub services: Vec<WantedService>,
    /// Full names of the networks the stack creates.
    pub networks: Vec<String>,
}

impl Rendered {
    /// The stack file text: YAML, no secret values in it.
    pub fn text(&self) -> Result<String> {
        serde_yaml_ng::to_string(&self.doc)
            .map_err(|e| Error::failed(format!("writing the rendered stack: {e}")))
    }

    pub fn service(&self, name: &str) -> Option<&WantedService> {
        self.services.iter().find(|s| s.name == name)
    }
}

/// The stack name of `env`: `deploy.stack_name`, else the project.
pub fn stack_name(inv: &Inventory, env: &Env) -> String {
    env.deploy
        .stack_name
        .as_ref()
        .map(|s| s.to_string())
        .unwrap_or_else(|| inv.project().to_string())
}

/// The stack file of `env`, resolved next to the inventory.
pub fn stack_file(inv: &Inventory, env: &Env) -> Result<PathBuf> {
    let p = env.stack.as_ref().ok_or_else(|| {
        Error::config(format!(
            "{}: env.{}.stack: not set: swarm-deploy needs the env's compose file",
            inv.file(),
            env.name
        ))
    })?;
    Ok(inv.resolve_path(p))
}

/// Render `env`'s stack for `meta`.
pub fn render(inv: &Inventory, env: &Env, meta: &Meta) -> Result<Rendered> {
    let path = stack_file(inv, env)?;
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Error::io(format!("reading {}", path.display()), e).or_config())?;
    let stack = stack_name(inv, env);
    let mut vars = env.vars.clone();
    vars.insert("PIMOPS_ENV".into(), env.name.clone());
    vars.insert("PIMOPS_TAG".into(), meta.tag.clone());
    vars.insert("PIMOPS_STACK".into(), stack.clone());
    let r = Renderer {
        file: path.clone(),
        dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
        text: &text,
        stack,
        allow_latest: env.deploy.allow_latest,
    };
    r.render(&vars, meta)
}

trait OrConfig {
    fn or_config(self) -> Error;
}

impl OrConfig for Error {
    /// A stack file that cannot be read is a configuration problem (78), not a failure.
    fn or_config(self) -> Error {
        Error::config(self.message().to_string())
    }
}

/// Fields whose substituted value must be an integer in the compose schema.
const INTEGER_FIELDS: [&str; 8] = [
    "published",
    "target",
    "replicas",
    "parallelism",
    "retries",
    "max_attempts",
    "max_replicas_per_node",
    "shm_size",
];

struct Renderer<'a> {
    file: PathBuf,
    dir: PathBuf,
    text: &'a str,
    stack: String,
    allow_latest: bool,
}

impl Renderer<'_> {
    fn err(&self, key: &str, msg: impl std::fmt::Display) -> Error {
        Error::config(format!("{}: {key}: {msg}", self.file.display()))
    }

    fn render(&self, vars: &BTreeMap<String, String>, meta: &Meta) -> Result<Rendered> {
        let mut doc: Value = serde_yaml_ng::from_str(self.text).map_err(|e| {
            let at = e
                .location()
                .map(|l| format!(":{}:{}", l.line(), l.column()))
                .unwrap_or_default();
            Error::config(format!("{}{at}: {e}", self.file.display()))
        })?;
        let mut missing: Vec<(String, String)> = Vec::new();
        self.interpolate(&mut doc, "", vars, &mut missing)?;
        if !missing.is_empty() {
            let list: Vec<String> = missing
                .iter()
                .map(|(name, key)| format!("{name} ({}, {key})", self.locate(name)))
                .collect();
            return Err(Error::config(format!(
                "{}: variables without a value: {}; set them in the env's vars",
                self.file.display(),
                list.join(", ")
            )));
        }
        let root = doc
            .as_mapping_mut()
            .ok_or_else(|| self.err("(top level)", "expected a mapping with services"))?;
        // Extension fields are anchor sources, already expanded where used; docker's loader
        // would interpolate them again, with nothing to fill them.
        root.retain(|k, _| !k.as_str().is_some_and(|k| k.starts_with("x-")));
        if !root.contains_key("version") {
            root.insert("version".into(), "3.8".into());
        }
        self.drop_unset_optional_secrets(root)?;
        let objects = self.objects(root)?;
        let volumes = self.volume_names(root);
        let networks = self.network_names(root);
        let by_key: BTreeMap<(ObjectKind, String), String> = objects
            .iter()
            .map(|o| ((o.kind, o.key.clone()), o.name.clone()))
            .collect();
        let services_map = root
            .get_mut("services")
            .and_then(Value::as_mapping_mut)
            .ok_or_else(|| self.err("services", "missing: a stack needs at least one service"))?;
        let mut services = Vec::new();
        for (k, def) in services_map.iter_mut() {
            let key = k
                .as_str()
                .ok_or_else(|| self.err("services", "service names must be strings"))?
                .to_string();
            services.push(self.service(&key, def, meta, &volumes, &networks, &by_key)?);
        }
        if services.is_empty() {
            return Err(self.err("services", "empty: a stack needs at least one service"));
        }
        let mut all_networks: Vec<String> = networks.into_values().flatten().collect();
        let prefix = format!("{}_", self.stack);
        for s in &services {
            for n in &s.networks {
                if n.starts_with(&prefix) && !all_networks.contains(n) {
                    all_networks.push(n.clone());
                }
            }
        }
        Ok(Rendered {
            stack: self.stack.clone(),
            doc,
            objects,
            services,
            networks: all_networks,
        })
    }

    /// `file:line:col` of the first use of `$name` in the stack file.
    fn locate(&self, name: &str) -> String {
        for (i, line) in self.text.lines().enumerate() {
            for pat in [format!("${{{name}"), format!("${name}")] {
                if let Some(col) = line.find(&pat) {
                    return format!("{}:{}:{}", self.file.display(), i + 1, col + 1);
                }
            }
        }
        self.file.display().to_string()
    }

    fn interpolate(
        &self,
        v: &mut Value,
        key: &str,
        vars: &BTreeMap<String, String>,
        missing: &mut Vec<(String, String)>,
    ) -> Result<()> {
        match v {
            Value::String(s) => match interpolate::substitute(s, vars) {
                Ok(out) => {
                    let was_template = out != *s;
                    *s = out;
                    // Compose casts substituted values of integer fields back to numbers;
                    // docker's loader rejects `published: "8080"`.
                    let field = key.rsplit('.').next().unwrap_or(key);
                    if was_template && INTEGER_FIELDS.contains(&field) {
                        if let Ok(n) = s.trim().parse::<u64>() {
                            *v = Value::from(n);
                        }
                    }
                }
                Err(Problem::Missing(names)) => {
                    for n in names {
                        if !missing.iter().any(|(m, _)| *m == n) {
                            missing.push((n, key.to_string()));
                        }
                    }
                }
                Err(Problem::Syntax(m)) => return Err(self.err(key, m)),
            },
            Value::Sequence(seq) => {
                for (i, item) in seq.iter_mut().enumerate() {
                    self.interpolate(item, &format!("{key}[{i}]"), vars, missing)?;
                }
            }
            Value::Mapping(m) => {
                for (k, item) in m.iter_mut() {
                    let name = k.as_str().map(str::to_string).unwrap_or_default();
                    // Extension fields (x-*) are anchors' sources: compose leaves them alone.
                    if key.is_empty() && name.starts_with("x-") {
                        continue;
                    }
                    let path = if key.is_empty() {
                        name
                    } else {
                        format!("{key}.{name}")
                    };
                    self.interpolate(item, &path, vars, missing)?;
                }
            }
            Value::Tagged(t) => self.interpolate(&mut t.value, key, vars, missing)?,
            _ => {}
        }
        Ok(())
    }

    /// A top-level secret marked `x-pimops-optional: true` (only one read from the
    /// `environment`) is left out, with every service's reference to it, when its
    /// variable (NAME or NAME_FILE) is unset: a feature that needs a credential only
    /// when it is used (ACME's DNS token) does not make every deploy provide one. Set,
    /// it is an ordinary secret; the marker itself is removed either way.
    fn drop_unset_optional_secrets(&self, root: &mut Mapping) -> Result<()> {
        let Some(map) = root.get_mut("secrets").and_then(Value::as_mapping_mut) else {
            return Ok(());
        };
        let mut dropped = Vec::new();
        for (k, def) in map.iter_mut() {
            let key = k.as_str().unwrap_or_default().to_string();
            let Some(m) = def.as_mapping_mut() else {
                continue;
            };
            let Some(flag) = m.remove("x-pimops-optional") else {
                continue;
            };
            let path = format!("secrets.{key}.x-pimops-optional");
            if flag.as_bool() != Some(true) {
                return Err(self.err(&path, "expected true (or leave it out)"));
            }
            let Some(var) = m.get("environment").and_then(Value::as_str) else {
                return Err(self.err(
                    &path,
                    "only a secret read from `environment` may be optional",
                ));
            };
            let set = pimops::secrets::get(var)
                .map_err(|e| {
                    e.context(format!(
                        "{}: secrets.{key}.environment",
                        self.file.display()
                    ))
                })?
                .is_some();
            if !set {
                log::info!("secret {key}: {var} is not set: left out of the stack (optional)");
                dropped.push(key);
            }
        }
        if dropped.is_empty() {
            return Ok(());
        }
        map.retain(|k, _| !k.as_str().is_some_and(|k| dropped.iter().any(|d| d == k)));
        if let Some(services) = root.get_mut("services").and_then(Value::as_mapping_mut) {
            for (_, svc) in services.iter_mut() {
                let Some(list) = svc.get_mut("secrets").and_then(Value::as_sequence_mut) else {
                    continue;
                };
                // A reference is the key, or a mapping whose `source` is the key.
                list.retain(|r| {
                    let name = r
                        .as_str()
                        .or_else(|| r.get("source").and_then(Value::as_str));
                    !name.is_some_and(|n| dropped.iter().any(|d| d == n))
                });
            }
        }
        Ok(())
    }

    /// Top-level configs and secrets with `file`, `content` or `environment` become
    /// external objects named by content hash; `external` ones stay as written.
    fn objects(&self, root: &mut Mapping) -> Result<Vec<Object>> {
        let mut out = Vec::new();
        for (section, kind) in [
            ("configs", ObjectKind::Config),
            ("secrets", ObjectKind::Secret),
        ] {
            let Some(map) = root.get_mut(section).and_then(Value::as_mapping_mut) else {
                continue;
            };
            for (k, def) in map.iter_mut() {
                let key = k.as_str().unwrap_or_default().to_string();
                let path = format!("{section}.{key}");
                let m = def.as_mapping().ok_or_else(|| {
                    self.err(
                        &path,
                        "expected a mapping (file, content, environment or external)",
                    )
                })?;
                if m.get("external").and_then(Value::as_bool) == Some(true) {
                    continue;
                }
                let data = if let Some(f) = m.get("file").and_then(Value::as_str) {
                    let p = self.dir.join(f);
                    let bytes = std::fs::read(&p).map_err(|e| {
                        self.err(
                            &format!("{path}.file"),
                            format!("reading {}: {}", p.display(), pimops::error::io_reason(&e)),
                        )
                    })?;
                    match kind {
                        ObjectKind::Config => ObjectData::Plain(bytes),
                        ObjectKind::Secret => ObjectData::Secret(Secret::new(
                            String::from_utf8(bytes).map_err(|_| {
                                self.err(
                                    &format!("{path}.file"),
                                    "a secret file must be UTF-8 text",
                                )
                            })?,
                        )),
                    }
                } else if let Some(c) = m.get("content").and_then(Value::as_str) {
                    if kind == ObjectKind::Secret {
                        return Err(self.err(
                            &format!("{path}.content"),
                            "a secret's value must not be in the stack file: use environment = NAME (NAME or NAME_FILE in swarm-deploy's environment)",
                        ));
                    }
                    ObjectData::Plain(c.as_bytes().to_vec())
                } else if let Some(var) = m.get("environment").and_then(Value::as_str) {
                    let secret = pimops::secrets::require(var).map_err(|e| {
                        e.context(format!("{}: {path}.environment", self.file.display()))
                    })?;
                    match kind {
                        ObjectKind::Secret => ObjectData::Secret(secret),
                        ObjectKind::Config => {
                            ObjectData::Plain(secret.expose().as_bytes().to_vec())
                        }
                    }
                } else {
                    return Err(self.err(
                        &path,
                        "needs one of file, content, environment or external: true",
                    ));
                };
                let hash = hex::encode(Sha256::digest(data.bytes()));
                let name = format!("{}_{key}_{}", self.stack, &hash[..12]);
                if name.len() > 64 {
                    return Err(self.err(
                        &path,
                        format!("{name:?} is longer than Swarm's 64 characters: use a shorter key"),
                    ));
                }
                let mut ext = Mapping::new();
                ext.insert("external".into(), true.into());
                ext.insert("name".into(), name.clone().into());
                *def = Value::Mapping(ext);
                out.push(Object {
                    kind,
                    key,
                    name,
                    data,
                });
            }
        }
        Ok(out)
    }

    /// Top-level volume key → the name Swarm gives it.
    fn volume_names(&self, root: &Mapping) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        if let Some(map) = root.get("volumes").and_then(Value::as_mapping) {
            for (k, def) in map {
                let key = k.as_str().unwrap_or_default().to_string();
                let explicit = def.get("name").and_then(Value::as_str).map(str::to_string);
                let name = explicit.unwrap_or_else(|| {
                    if def.get("external").and_then(Value::as_bool) == Some(true) {
                        key.clone()
                    } else {
                        format!("{}_{key}", self.stack)
                    }
                });
                out.insert(key, name);
            }
        }
        out
    }

    /// Top-level network key → `Some(full name)` for networks the stack creates, `None` for
    /// external ones. `default` is implied when services name no networks.
    fn network_names(&self, root: &Mapping) -> BTreeMap<String, Option<String>> {
        let mut out = BTreeMap::new();
        if let Some(map) = root.get("networks").and_then(Value::as_mapping) {
            for (k, def) in map {
                let key = k.as_str().unwrap_or_default().to_string();
                let external = def.get("external").and_then(Value::as_bool) == Some(true);
                let name = def
                    .get("name")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("{}_{key}", self.stack));
                out.insert(key, if external { None } else { Some(name) });
            }
        }
        out
    }

    fn service(
        &self,
        key: &str,
        def: &mut Value,
        meta: &Meta,
        volumes: &BTreeMap<String, String>,
        networks: &BTreeMap<String, Option<String>>,
        objects: &BTreeMap<(ObjectKind, String), String>,
    ) -> Result<WantedService> {
        let at = format!("services.{key}");
        let name = format!("{}_{key}", self.stack);
        if name.len() > 63 {
            return Err(self.err(
                &at,
                format!("{name:?} is longer than Swarm's 63 characters"),
            ));
        }
        let m = def
            .as_mapping_mut()
            .ok_or_else(|| self.err(&at, "expected a mapping"))?;
        if m.contains_key("env_file") {
            return Err(self.err(&format!("{at}.env_file"), "not supported: the stack file goes to the manager on stdin; use environment with ${VARS} from the env's vars"));
        }
        let image = m
            .get("image")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                self.err(
                    &format!("{at}.image"),
                    "missing: every service needs an image",
                )
            })?
            .to_string();
        if !self.allow_latest && !pinned(&image) {
            return Err(self.err(
                &format!("{at}.image"),
                format!("{image:?} is not pinned (no tag, or latest): use a tag such as ${{PIMOPS_TAG}}, or set deploy.allow_latest for this env"),
            ));
        }
        let env = environment(m.get("environment"))
            .map_err(|e| self.err(&format!("{at}.environment"), e))?;
        if let Some(Value::Mapping(envmap)) = m.get_mut("environment") {
            for (_, v) in envmap.iter_mut() {
                if !v.is_string() {
                    *v = Value::String(scalar_string(v));
                }
            }
        }
        let mounts = self.mounts(&at, m.get("volumes"), volumes)?;
        let service_networks = service_networks(&self.stack, m.get("networks"), networks);
        let refs = |section: &str, kind: ObjectKind| -> Vec<(String, String)> {
            m.get(section)
                .and_then(Value::as_sequence)
                .map(|seq| {
                    seq.iter()
                        .filter_map(|r| {
                            let (source, target) = match r {
                                Value::String(s) => (s.clone(), s.clone()),
                                Value::Mapping(rm) => {
                                    let s = rm.get("source").and_then(Value::as_str)?.to_string();
                                    let t = rm
                                        .get("target")
                                        .and_then(Value::as_str)
                                        .map(str::to_string)
                                        .unwrap_or_else(|| s.clone());
                                    (s, t)
                                }
                                _ => return None,
                            };
                            let hashed = objects
                                .get(&(kind, source.clone()))
                                .cloned()
                                .unwrap_or(source);
                            Some((hashed, target))
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        let config_refs = refs("configs", ObjectKind::Config);
        let secret_refs = refs("secrets", ObjectKind::Secret);

        let deploy = m
            .entry("deploy".into())
            .or_insert_with(|| Value::Mapping(Mapping::new()));
        let dm = deploy
            .as_mapping_mut()
            .ok_or_else(|| self.err(&format!("{at}.deploy"), "expected a mapping"))?;
        let replicas = if dm.get("mode").and_then(Value::as_str) == Some("global") {
            None
        } else {
            let r = match dm.get("replicas") {
                None => 1,
                Some(v) => int_of(v).ok_or_else(|| {
                    self.err(&format!("{at}.deploy.replicas"), "expected a whole number")
                })?,
            };
            dm.insert("replicas".into(), Value::from(r));
            Some(r)
        };
        let resources = self.resources(&at, dm.get("resources"))?;
        let update = self.update_config(&at, dm)?;
        let mut labels =
            labels(dm.get("labels")).map_err(|e| self.err(&format!("{at}.deploy.labels"), e))?;
        labels.insert(spec::LABEL_TAG.into(), meta.tag.clone());
        labels.insert(spec::LABEL_COMMIT.into(), meta.commit.clone());
        // The hash covers the whole definition and the hashed names of what it references,
        // so a changed config content or command is seen although no compared field moved.
        let mut label_map = Mapping::new();
        for (k, v) in &labels {
            label_map.insert(k.clone().into(), v.clone().into());
        }
        dm.insert("labels".into(), Value::Mapping(label_map));
        let hash_input = serde_json::json!({
            "definition": serde_json::to_value(&*def).unwrap_or(Json::Null),
            "configs": config_refs,
            "secrets": secret_refs,
        });
        let spec_hash =
            hex::encode(Sha256::digest(hash_input.to_string().as_bytes()))[..16].to_string();
        labels.insert(spec::LABEL_SPEC.into(), spec_hash.clone());
        if let Some(Value::Mapping(lm)) = def.get_mut("deploy").and_then(|d| d.get_mut("labels")) {
            lm.insert(spec::LABEL_SPEC.into(), spec_hash.into());
            lm.insert(spec::LABEL_BY.into(), meta.by.clone().into());
        }
        Ok(WantedService {
            name,
            key: key.to_string(),
            definition: def.clone(),
            view: ServiceView {
                image,
                env,
                replicas,
                labels,
                mounts,
                resources,
                update,
            },
            networks: service_networks,
            configs: config_refs.into_iter().map(|(name, _)| name).collect(),
            secrets: secret_refs,
        })
    }

    fn mounts(
        &self,
        at: &str,
        v: Option<&Value>,
        volumes: &BTreeMap<String, String>,
    ) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let Some(seq) = v.and_then(Value::as_sequence) else {
            return Ok(out);
        };
        for (i, item) in seq.iter().enumerate() {
            let key = format!("{at}.volumes[{i}]");
            let (kind, source, target, ro) = match item {
                Value::String(s) => {
                    let parts: Vec<&str> = s.split(':').collect();
                    match parts.as_slice() {
                        [t] => ("volume".to_string(), String::new(), t.to_string(), false),
                        [s, t] => (String::new(), s.to_string(), t.to_string(), false),
                        [s, t, mode] => (
                            String::new(),
                            s.to_string(),
                            t.to_string(),
                            mode.split(',').any(|m| m == "ro"),
                        ),
                        _ => {
                            return Err(
                                self.err(&key, format!("{s:?}: expected SOURCE:TARGET[:MODE]"))
                            )
                        }
                    }
                }
                Value::Mapping(m) => (
                    m.get("type")
                        .and_then(Value::as_str)
                        .unwrap_or("volume")
                        .to_string(),
                    m.get("source")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    m.get("target")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    m.get("read_only").and_then(Value::as_bool).unwrap_or(false),
                ),
                _ => return Err(self.err(&key, "expected a string or a mapping")),
            };
            let kind = if kind.is_empty() {
                if source.starts_with('/') || source.starts_with('.') || source.starts_with('~') {
                    "bind".to_string()
                } else {
                    "volume".to_string()
                }
            } else {
                kind
            };
            if kind == "bind" && !source.starts_with('/') {
                return Err(self.err(&key, format!("{source:?}: a relative bind mount cannot work with the stack file on stdin: use an absolute path on the manager")));
            }
            let source = if kind == "volume" && !source.is_empty() {
                match volumes.get(&source) {
                    Some(n) => n.clone(),
                    None => {
                        return Err(self.err(
                            &key,
                            format!(
                                "volume {source:?} is not declared under the top-level volumes"
                            ),
                        ))
                    }
                }
            } else {
                source
            };
            out.push(spec::mount_key(&kind, &source, &target, ro));
        }
        out.sort();
        Ok(out)
    }

    fn resources(&self, at: &str, v: Option<&Value>) -> Result<Resources> {
        let mut r = Resources::default();
        let Some(v) = v else { return Ok(r) };
        let (mut lc, mut lm) = (0, 0);
        self.cpu_mem(at, "limits", v.get("limits"), &mut lc, &mut lm)?;
        r.limit_nano_cpus = lc;
        r.limit_memory = lm;
        let (mut rc, mut rm) = (0, 0);
        self.cpu_mem(at, "reservations", v.get("reservations"), &mut rc, &mut rm)?;
        r.reserve_nano_cpus = rc;
        r.reserve_memory = rm;
        Ok(r)
    }

    fn cpu_mem(
        &self,
        at: &str,
        section: &str,
        v: Option<&Value>,
        cpus: &mut i64,
        mem: &mut i64,
    ) -> Result<()> {
        let Some(v) = v else { return Ok(()) };
        if let Some(c) = v.get("cpus") {
            let s = scalar_string(c);
            let f: f64 = s.parse().map_err(|_| {
                self.err(
                    &format!("{at}.deploy.resources.{section}.cpus"),
                    format!("{s:?}: expected a number like \"0.5\""),
                )
            })?;
            *cpus = (f * 1e9) as i64;
        }
        if let Some(m) = v.get("memory") {
            let s = scalar_string(m);
            *mem = spec::ram_bytes(&s).ok_or_else(|| {
                self.err(
                    &format!("{at}.deploy.resources.{section}.memory"),
                    format!("{s:?}: expected a size like \"512M\""),
                )
            })?;
        }
        Ok(())
    }

    fn update_config(&self, at: &str, dm: &mut Mapping) -> Result<UpdateConfig> {
        let mut u = UpdateConfig::default();
        let Some(Value::Mapping(m)) = dm.get_mut("update_config") else {
            return Ok(u);
        };
        let key = |k: &str| format!("{at}.deploy.update_config.{k}");
        if let Some(v) = m.get("parallelism") {
            let n = int_of(v)
                .ok_or_else(|| self.err(&key("parallelism"), "expected a whole number"))?;
            u.parallelism = n;
            m.insert("parallelism".into(), Value::from(n));
        }
        for (k, slot) in [("delay", &mut u.delay_ns), ("monitor", &mut u.monitor_ns)] {
            if let Some(v) = m.get(k) {
                let s = scalar_string(v);
                *slot = spec::go_duration_ns(&s).ok_or_else(|| {
                    self.err(&key(k), format!("{s:?}: expected a duration like \"10s\""))
                })?;
            }
        }
        if let Some(v) = m.get("failure_action").and_then(Value::as_str) {
            u.failure_action = v.to_string();
        }
        if let Some(v) = m.get("order").and_then(Value::as_str) {
            u.order = v.to_string();
        }
        if let Some(v) = m.get("max_failure_ratio") {
            let s = scalar_string(v);
            u.max_failure_ratio = s
                .parse()
                .map_err(|_| self.err(&key("max_failure_ratio"), "expected a number"))?;
        }
        Ok(u)
    }
}

/// Whether an image reference names a fixed version: a digest, or a tag other than `latest`.
fn pinned(image: &str) -> bool {
    if image.contains('@') {
        return true;
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.rsplit_once(':') {
        Some((_, tag)) => !tag.is_empty() && tag != "latest",
        None => false,
    }
}

fn scalar_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => String::new(),
        other => serde_yaml_ng::to_string(other)
            .unwrap_or_default()
            .trim()
            .to_string(),
    }
}

fn int_of(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn environment(v: Option<&Value>) -> std::result::Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    match v {
        None => {}
        Some(Value::Mapping(m)) => {
            for (k, val) in m {
                let k = k
                    .as_str()
                    .ok_or("variable names must be strings")?
                    .to_string();
                if val.is_null() {
                    return Err(format!("{k} has no value (compose would take it from the deploying shell): give it one, e.g. ${{{k}}} from the env's vars"));
                }
                out.insert(k, scalar_string(val));
            }
        }
        Some(Value::Sequence(seq)) => {
            for item in seq {
                let s = item.as_str().ok_or("expected NAME=value strings")?;
                let (k, val) = s
                    .split_once('=')
                    .ok_or_else(|| format!("{s:?} has no value: write NAME=value"))?;
                out.insert(k.to_string(), val.to_string());
            }
        }
        Some(_) => return Err("expected a mapping or a list of NAME=value".into()),
    }
    Ok(out)
}

fn labels(v: Option<&Value>) -> std::result::Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    match v {
        None => {}
        Some(Value::Mapping(m)) => {
            for (k, val) in m {
                out.insert(
                    k.as_str().ok_or("label names must be strings")?.to_string(),
                    scalar_string(val),
                );
            }
        }
        Some(Value::Sequence(seq)) => {
            for item in seq {
                let s = item.as_str().ok_or("expected name=value strings")?;
                let (k, val) = s.split_once('=').unwrap_or((s, ""));
                out.insert(k.to_string(), val.to_string());
            }
        }
        Some(_) => return Err("expected a mapping or a list of name=value".into()),
    }
    Ok(out)
}

/// Full names of the stack networks a service joins (`default` when it names none).
fn service_networks(
    stack: &str,
    v: Option<&Value>,
    networks: &BTreeMap<String, Option<String>>,
) -> Vec<String> {
    let keys: Vec<String> = match v {
        Some(Value::Sequence(seq)) => seq
            .iter()
            .filter_map(|n| n.as_str().map(str::to_string))
            .collect(),
        Some(Value::Mapping(m)) => m
            .keys()
            .filter_map(|n| n.as_str().map(str::to_string))
            .collect(),
        _ => vec!["default".to_string()],
    };
    keys.iter()
        .filter_map(|k| match networks.get(k) {
            Some(Some(full)) => Some(full.clone()),
            Some(None) => Some(k.clone()),
            None if k == "default" => Some(format!("{stack}_default")),
            None => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinned_images() {
        assert!(pinned("registry.example.com:5000/pim/php:abc123"));
        assert!(pinned("app@sha256:0123"));
        assert!(!pinned("registry.example.com:5000/pim/php"));
        assert!(!pinned("nginx:latest"));
        assert!(!pinned("nginx"));
    }
}
