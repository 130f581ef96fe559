//! The docker CLI on the env's manager (here, or over SSH), as the few typed calls a deploy
//! needs. Everything is argv plus stdin: the stack file and secret values go on stdin, so
//! nothing with secrets lands on the manager's disk or in its process list.

use std::collections::BTreeSet;
use std::sync::Arc;

use pimops::exec::{Command, Exec, Output};
use pimops::{Error, Result};
use serde_json::Value;

use crate::render::ObjectKind;

/// Docker's label on everything of a stack.
pub const NAMESPACE: &str = "com.docker.stack.namespace";
/// Our label on hashed configs and secrets: the key in the stack file they were made from.
pub const OBJECT_KEY: &str = "pimops.key";

#[derive(Clone)]
pub struct Docker {
    exec: Arc<dyn Exec>,
}

impl Docker {
    pub fn new(exec: Arc<dyn Exec>) -> Docker {
        Docker { exec }
    }

    pub fn exec(&self) -> Arc<dyn Exec> {
        Arc::clone(&self.exec)
    }

    pub fn describe(&self) -> String {
        self.exec.describe()
    }

    /// Run `docker ARGS` (stdin optional); a non-zero exit is an error quoting stderr.
    pub fn run(&self, args: &[&str], stdin: Option<&[u8]>) -> Result<String> {
        let out = self.raw(args, stdin)?;
        if !out.success() {
            return Err(Error::failed(format!(
                "docker {} on {} failed ({}): {}",
                args.iter().take(2).copied().collect::<Vec<_>>().join(" "),
                self.exec.describe(),
                out.status
                    .map(|c| format!("exit {c}"))
                    .unwrap_or_else(|| "killed".into()),
                out.stderr_str().trim()
            )));
        }
        Ok(out.stdout_str())
    }

    pub fn raw(&self, args: &[&str], stdin: Option<&[u8]>) -> Result<Output> {
        let mut cmd = Command::new("docker").args(args.iter().copied());
        if let Some(data) = stdin {
            cmd = cmd.stdin(data.to_vec());
        }
        self.exec
            .run(&cmd)
            .map_err(|e| e.context(format!("running docker on {}", self.exec.describe())))
    }

    /// `docker inspect`-style JSON array output.
    fn json_array(&self, args: &[&str]) -> Result<Vec<Value>> {
        let text = self.run(args, None)?;
        let v: Value = serde_json::from_str(text.trim()).map_err(|e| {
            Error::failed(format!("docker {}: unexpected output: {e}", args.join(" ")))
        })?;
        Ok(v.as_array().cloned().unwrap_or_default())
    }

    fn ids(&self, args: &[&str]) -> Result<Vec<String>> {
        Ok(self
            .run(args, None)?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect())
    }

    /// Every service of `stack`, inspected.
    pub fn services(&self, stack: &str) -> Result<Vec<Value>> {
        let filter = format!("label={NAMESPACE}={stack}");
        let ids = self.ids(&["service", "ls", "-q", "--filter", &filter])?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut args = vec!["service", "inspect"];
        args.extend(ids.iter().map(String::as_str));
        self.json_array(&args)
    }

    /// Every service of `stack`, inspected, in one round trip when the stack holds exactly
    /// the `expected` names: `service ls` and `service inspect <expected>` run at once, and
    /// only services of the stack not expected are inspected afterwards.
    pub fn services_expecting(&self, stack: &str, expected: &[String]) -> Result<Vec<Value>> {
        let filter = format!("label={NAMESPACE}={stack}");
        let (ids, found) = std::thread::scope(|s| {
            let ls = s.spawn(|| self.ids(&["service", "ls", "-q", "--filter", &filter]));
            let found = self.inspect_existing(expected);
            (
                ls.join()
                    .unwrap_or_else(|_| Err(Error::failed("listing services panicked"))),
                found,
            )
        });
        let (ids, mut found) = (ids?, found?);
        let known: BTreeSet<String> = found
            .iter()
            .filter_map(|v| v["ID"].as_str().map(str::to_string))
            .collect();
        let extra: Vec<&str> = ids
            .iter()
            .filter(|id| !known.iter().any(|k| k.starts_with(id.as_str())))
            .map(String::as_str)
            .collect();
        if !extra.is_empty() {
            let mut args = vec!["service", "inspect"];
            args.extend(extra);
            found.extend(self.json_array(&args)?);
        }
        // A service of the same name outside the stack is not the stack's.
        found.retain(|v| v["Spec"]["Labels"][NAMESPACE].as_str() == Some(stack));
        Ok(found)
    }

    /// `service inspect NAMES…` where some may not exist: the ones that do.
    fn inspect_existing(&self, names: &[String]) -> Result<Vec<Value>> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let mut args = vec!["service", "inspect"];
        args.extend(names.iter().map(String::as_str));
        self.inspect_found(&args, "the services")
    }

    /// An inspect of several objects some of which may be gone: the JSON array of those
    /// found. Any error other than "not found" fails.
    fn inspect_found(&self, args: &[&str], what: &str) -> Result<Vec<Value>> {
        let out = self.raw(args, None)?;
        let err = out.stderr_str();
        let only_gone = err.lines().filter(|l| !l.trim().is_empty()).all(|l| {
            let l = l.to_ascii_lowercase();
            l.contains("not found") || l.contains("no such")
        });
        if !out.success() && !only_gone {
            return Err(Error::failed(format!(
                "docker inspect of {what} on {}: {}",
                self.exec.describe(),
                err.trim()
            )));
        }
        let v: Value = serde_json::from_str(out.stdout_str().trim()).map_err(|e| {
            Error::failed(format!("docker inspect of {what}: unexpected output: {e}"))
        })?;
        Ok(v.as_array().cloned().unwrap_or_default())
    }

    /// One service by name, inspected; `None` when it does not exist.
    pub fn service(&self, name: &str) -> Result<Option<Value>> {
        let out = self.raw(&["service", "inspect", name], None)?;
        if !out.success() {
            let err = out.stderr_str();
            let lower = err.to_ascii_lowercase();
            if lower.contains("not found") || lower.contains("no such service") {
                return Ok(None);
            }
            return Err(Error::failed(format!(
                "docker service inspect {name} on {}: {}",
                self.exec.describe(),
                err.trim()
            )));
        }
        let v: Value = serde_json::from_str(out.stdout_str().trim())
            .map_err(|e| Error::failed(format!("docker service inspect {name}: {e}")))?;
        Ok(v.as_array().and_then(|a| a.first()).cloned())
    }

    /// The tasks of `service` (all states), inspected.
    pub fn tasks(&self, service: &str) -> Result<Vec<Value>> {
        let ids = self.ids(&["service", "ps", "-q", "--no-trunc", service])?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut args = vec!["inspect", "--type", "task"];
        args.extend(ids.iter().map(String::as_str));
        // A task can be removed between the listing and the inspect (Swarm keeps only a
        // few old ones): what was found is the answer.
        self.inspect_found(&args, &format!("the tasks of {service}"))
    }

    /// Names of the existing configs or secrets of `stack`.
    pub fn object_names(&self, kind: ObjectKind) -> Result<BTreeSet<String>> {
        Ok(self
            .ids(&[kind.as_str(), "ls", "--format", "{{.Name}}"])?
            .into_iter()
            .collect())
    }

    /// The configs or secrets of `stack`, inspected (name, labels, creation time).
    pub fn objects(&self, kind: ObjectKind, stack: &str) -> Result<Vec<Value>> {
        let filter = format!("label={NAMESPACE}={stack}");
        let ids = self.ids(&[kind.as_str(), "ls", "-q", "--filter", &filter])?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut args = vec![kind.as_str(), "inspect"];
        args.extend(ids.iter().map(String::as_str));
        self.json_array(&args)
    }

    /// Create a config or secret from `data` on stdin, labelled as part of `stack`.
    pub fn create_object(
        &self,
        kind: ObjectKind,
        stack: &str,
        key: &str,
        name: &str,
        data: &[u8],
    ) -> Result<()> {
        let ns = format!("{NAMESPACE}={stack}");
        let k = format!("{OBJECT_KEY}={key}");
        self.run(
            &[
                kind.as_str(),
                "create",
                "--label",
                &ns,
                "--label",
                &k,
                name,
                "-",
            ],
            Some(data),
        )
        .map(|_| ())
    }

    pub fn remove_object(&self, kind: ObjectKind, name: &str) -> Result<()> {
        self.run(&[kind.as_str(), "rm", name], None).map(|_| ())
    }

    pub fn network_names(&self) -> Result<BTreeSet<String>> {
        Ok(self
            .ids(&["network", "ls", "--format", "{{.Name}}"])?
            .into_iter()
            .collect())
    }

    /// `docker stack deploy --prune --with-registry-auth` with the stack file on stdin.
    pub fn stack_deploy(&self, stack: &str, text: &str, resolve_image: &str) -> Result<()> {
        self.run(
            &[
                "stack",
                "deploy",
                "--prune",
                "--with-registry-auth",
                "--resolve-image",
                resolve_image,
                "--compose-file",
                "-",
                stack,
            ],
            Some(text.as_bytes()),
        )
        .map(|_| ())
    }

    /// Back to the service's previous spec, not waiting (the caller watches).
    pub fn rollback(&self, service: &str) -> Result<()> {
        self.run(&["service", "rollback", "--detach", service], None)
            .map(|_| ())
    }

    pub fn remove_service(&self, service: &str) -> Result<()> {
        self.run(&["service", "rm", service], None).map(|_| ())
    }

    /// The last lines of a service's logs (stdout and stderr of its tasks).
    pub fn logs(&self, service: &str, lines: usize) -> String {
        let n = lines.to_string();
        match self.raw(&["service", "logs", "--raw", "--tail", &n, service], None) {
            Ok(out) => {
                let mut t = out.stdout_str();
                t.push_str(&out.stderr_str());
                t
            }
            Err(e) => format!("(no logs: {e})"),
        }
    }

    /// `sh -c SCRIPT sh ARGS…` on the manager: for the lock and the audit log, with
    /// arguments passed as positional parameters, never spliced into the script.
    pub fn sh(&self, script: &str, args: &[&str], stdin: Option<&[u8]>) -> Result<Output> {
        let mut cmd = Command::new("sh").arg("-c").arg(script).arg("sh");
        cmd = cmd.args(args.iter().copied());
        if let Some(d) = stdin {
            cmd = cmd.stdin(d.to_vec());
        }
        self.exec.run(&cmd)
    }
}
