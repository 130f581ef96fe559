//! The inventory: `infra.toml`, loaded, validated and typed. Every tool reads the part it
//! needs; every error is a configuration error (exit 78) that names the file, line, column
//! and key path: `infra.toml:12:9: env.prod.vm.memory: expected a size like "48GiB" ...`.
//!
//! Loading is two passes over one text: serde (through serde_path_to_error, for the key
//! path) catches type errors and unknown keys with the parser's span; then `validate`
//! checks what relates several keys and finds positions with [`locate::locate`].

mod backup;
mod cloudflare;
mod deploy;
mod hyperv;
mod locate;
mod model;
mod ovh;
mod validate;

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer};
use toml_edit::ImDocument;

use crate::error::{Error, Result};
use crate::health::CheckSpec;

use backup::BackupSettings;
pub use backup::{Backup, BackupPassword, Incremental, Keep};
pub use cloudflare::{Cloudflare, DnsRecord, DnsType, EnvCloudflare, WafAction, WafRule};
pub use deploy::{Deploy, Release, StackName};
pub use hyperv::{HyperV, Vm};
use locate::KeyPath;
pub use model::{
    BranchGlob, Cidr, Database, DbEndpoint, DumpMethod, Env, MacAddress, SshSettings, Volume,
};
pub use ovh::{Ovh, OvhFirewall, OvhIp, OvhServer};

/// A loaded, valid inventory.
#[derive(Debug, Clone)]
pub struct Inventory {
    file: String,
    dir: PathBuf,
    project: String,
    ovh: Option<Ovh>,
    hyperv: Option<HyperV>,
    cloudflare: Cloudflare,
    ssh: SshSettings,
    envs: Vec<Env>,
    checks: Vec<CheckSpec>,
    /// `checks_for` of every env, computed (and validated) at load time, by env name.
    expanded: BTreeMap<String, Vec<CheckSpec>>,
}

/// The file as written, before validation.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    project: String,
    #[serde(default)]
    ovh: Option<Ovh>,
    #[serde(default)]
    hyperv: Option<HyperV>,
    #[serde(default)]
    cloudflare: Cloudflare,
    #[serde(default)]
    ssh: SshSettings,
    #[serde(default)]
    backup: BackupSettings,
    #[serde(default)]
    env: Envs,
    #[serde(default)]
    check: Vec<CheckSpec>,
}

/// `[env.*]` in file order, each named by its key.
#[derive(Default)]
struct Envs(Vec<Env>);

impl<'de> Deserialize<'de> for Envs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Envs;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a table of envs, [env.NAME]")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<Envs, A::Error> {
                let mut envs = Vec::new();
                while let Some(name) = map.next_key::<String>()? {
                    let mut env: Env = map.next_value()?;
                    env.name = name;
                    envs.push(env);
                }
                Ok(Envs(envs))
            }
        }
        d.deserialize_map(V)
    }
}

/// The text being loaded, for turning spans and key paths into `FILE:LINE:COL: path: msg`.
pub(crate) struct Source {
    label: String,
    text: String,
    doc: Option<ImDocument<String>>,
}

impl Source {
    /// An error at `span`, or where `path` is when the span is unknown.
    fn error_span(&self, span: Option<Range<usize>>, path: &KeyPath, message: &str) -> Error {
        let span = span.or_else(|| self.doc.as_ref().and_then(|d| locate::locate(d, path)));
        let (line, col) = span.map_or((1, 1), |s| locate::line_col(&self.text, s.start));
        if path.is_empty() {
            Error::config(format!("{}:{line}:{col}: {message}", self.label))
        } else {
            Error::config(format!("{}:{line}:{col}: {path}: {message}", self.label))
        }
    }

    /// An error at the key `path` (or its nearest existing ancestor).
    pub(crate) fn error_at(&self, path: &KeyPath, message: impl AsRef<str>) -> Error {
        self.error_span(None, path, message.as_ref())
    }
}

impl Inventory {
    /// Read and validate the inventory at `path`; errors are labelled with `path` as given.
    pub fn load(path: &Path) -> Result<Inventory> {
        let label = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::config(format!(
                "{label}: cannot read: {}",
                crate::error::io_reason(&e)
            ))
        })?;
        let mut inv = Inventory::from_str(&text, &label)?;
        inv.dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        // A relative password_file means "next to infra.toml", wherever the tool runs.
        let dir = inv.dir.clone();
        for env in &mut inv.envs {
            if let Some(Backup {
                password: BackupPassword::File(f),
                ..
            }) = &mut env.merged_backup
            {
                if f.is_relative() {
                    *f = dir.join(&*f);
                }
            }
        }
        Ok(inv)
    }

    /// Parse and validate inventory text; `file_label` names it in error messages. Relative
    /// paths resolve against the current directory (see [`Inventory::resolve_path`]).
    pub fn from_str(text: &str, file_label: &str) -> Result<Inventory> {
        let mut src = Source {
            label: file_label.to_string(),
            text: text.to_string(),
            doc: None,
        };
        let doc = match ImDocument::parse(text.to_string()) {
            Ok(doc) => doc,
            Err(e) => {
                return Err(src.error_span(e.span(), &KeyPath::default(), e.message().trim()))
            }
        };
        let de = toml_edit::de::Deserializer::from(doc.clone());
        src.doc = Some(doc);
        let raw: Raw = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = key_path(e.path());
            src.error_span(e.inner().span(), &path, e.inner().message().trim())
        })?;
        validate::inventory(&src, raw)
    }

    /// The file label errors use (the path as given to [`Inventory::load`]).
    pub fn file(&self) -> &str {
        &self.file
    }

    /// The directory relative paths in the inventory are resolved against.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `path` as written in the inventory, made relative to the inventory's directory.
    pub fn resolve_path(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.dir.join(path)
        }
    }

    /// `project`: prefix of stack, VM and backup host names.
    pub fn project(&self) -> &str {
        &self.project
    }

    /// `[ovh]`, or a configuration error for tools that need it.
    pub fn ovh(&self) -> Result<&Ovh> {
        self.ovh.as_ref().ok_or_else(|| self.missing_section("ovh"))
    }

    /// SSH options for reaching `env`'s docker target: the env's `ssh` over `[ssh]`.
    pub fn ssh_options(&self, env: &Env) -> crate::ssh::SshOptions {
        env.ssh.over(&self.ssh)
    }

    /// `[hyperv]`, or a configuration error for tools that need it.
    pub fn hyperv(&self) -> Result<&HyperV> {
        self.hyperv
            .as_ref()
            .ok_or_else(|| self.missing_section("hyperv"))
    }

    /// `[cloudflare]` (all keys have defaults).
    pub fn cloudflare(&self) -> &Cloudflare {
        &self.cloudflare
    }

    fn missing_section(&self, name: &str) -> Error {
        Error::config(format!("{}: no [{name}] section", self.file))
    }

    /// The envs in file order.
    pub fn envs(&self) -> &[Env] {
        &self.envs
    }

    /// The env called `name`, or a configuration error listing the known ones.
    pub fn env(&self, name: &str) -> Result<&Env> {
        self.envs.iter().find(|e| e.name == name).ok_or_else(|| {
            Error::config(format!(
                "{}: no env {name:?} (envs: {})",
                self.file,
                self.env_names()
            ))
        })
    }

    pub(crate) fn env_names(&self) -> String {
        env_list(&self.envs)
    }

    /// The first env, in file order, whose `branches` match `branch`.
    pub fn env_for_branch(&self, branch: &str) -> Option<&Env> {
        self.envs.iter().find(|e| e.matches_branch(branch))
    }

    /// Every `[[check]]` as written (templates not expanded).
    pub fn checks(&self) -> &[CheckSpec] {
        &self.checks
    }

    /// The checks that apply to `env` (those whose `envs` is empty or names it), in file
    /// order, with `{env}`, `{domain}`, `{project}` and `{zone}` expanded in every string
    /// value. Empty for an env that is not from this inventory.
    pub fn checks_for(&self, env: &Env) -> Vec<CheckSpec> {
        self.expanded.get(&env.name).cloned().unwrap_or_default()
    }

    /// `template` with `{env}`, `{project}`, `{domain}` and `{zone}` replaced for `env`. A
    /// placeholder the env has no value for, or an unknown one, is left as written.
    pub fn expand(&self, template: &str, env: &Env) -> String {
        expand(template, &self.project, env)
    }
}

pub(crate) fn env_list(envs: &[Env]) -> String {
    let names: Vec<&str> = envs.iter().map(|e| e.name.as_str()).collect();
    if names.is_empty() {
        "none defined".into()
    } else {
        names.join(", ")
    }
}

/// One pass, so a value containing `{env}` is not expanded again.
pub(crate) fn expand(template: &str, project: &str, env: &Env) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open..];
        let value = after.find('}').and_then(|close| {
            let value = match &after[1..close] {
                "env" => Some(env.name.as_str()),
                "project" => Some(project),
                "domain" => env.domain.as_deref(),
                "zone" => env.zone.as_deref(),
                _ => None,
            };
            value.map(|v| (v, close))
        });
        match value {
            Some((v, close)) => {
                out.push_str(v);
                rest = &after[close + 1..];
            }
            None => {
                out.push('{');
                rest = &after[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// serde_path_to_error's path in our form; `?` segments (unknown) are dropped.
fn key_path(p: &serde_path_to_error::Path) -> KeyPath {
    use serde_path_to_error::Segment;
    let mut out = KeyPath::default();
    for seg in p.iter() {
        out = match seg {
            Segment::Seq { index } => out.index(*index),
            Segment::Map { key } | Segment::Enum { variant: key } => out.key(key.as_str()),
            Segment::Unknown => out,
        };
    }
    out
}

#[cfg(test)]
mod tests;
