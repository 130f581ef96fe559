//! Talking to MariaDB and running its tools, for `backup-run` and `restore-verify`.
//!
//! - [`Location`]: where the server is — a socket or host:port on the exec target, or a
//!   Swarm service whose local task container runs every tool via `docker exec`.
//! - [`Connection`]: credentials in a private option file on that target, typed queries
//!   (tables, exact row counts, `CHECKSUM TABLE`, `CHECK TABLE`, binlog status), and the
//!   backup producers ([`DumpCommand`]) plus the binlog reader for shipping.
//! - [`ScratchServer`], [`prepare`], [`read_binlog_info`]: the restore side — a throwaway
//!   `mariadbd` on a restored datadir, binlog replay for point-in-time recovery, and
//!   loading a logical dump.

mod batch;
mod connection;
mod dump;
mod scratch;

pub use connection::{
    BinlogCoordinates, BinlogFile, BinlogStatus, CheckFailure, Connection, CountsAt, Table, Tool,
};
pub use dump::{dump_coordinates, DumpCommand, StreamTap, TapHandle};
pub use scratch::{init_datadir, prepare, read_binlog_info, ScratchOptions, ScratchServer};

use crate::error::{Error, Result};
use crate::exec::{Command, Exec};
use crate::inventory::DbEndpoint;

/// The Swarm label naming a task container's service (checked on docker 20.10).
const SERVICE_LABEL: &str = "com.docker.swarm.service.name";

/// Where the server is, as seen from the exec target that runs the tools.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Socket(std::path::PathBuf),
    Tcp {
        host: String,
        port: u16,
    },
    /// The running task container of a Swarm service on this node: tools run inside it
    /// (`docker exec`) and reach the server the way the container's own config says
    /// (its default socket), and see its datadir and binlogs.
    Container {
        id: String,
        service: String,
    },
}

impl Location {
    /// The location of an inventory endpoint; a service is looked up now with `docker ps`
    /// on `exec`, and exactly one running task container must be found on this node.
    pub fn resolve(endpoint: &DbEndpoint, exec: &dyn Exec) -> Result<Location> {
        match endpoint {
            DbEndpoint::Socket(p) => Ok(Location::Socket(p.clone())),
            DbEndpoint::Tcp { host, port } => Ok(Location::Tcp {
                host: host.clone(),
                port: *port,
            }),
            DbEndpoint::Service(service) => {
                let out = exec.run(&Command::new("docker").args([
                    "ps".to_string(),
                    "--filter".into(),
                    format!("label={SERVICE_LABEL}={service}"),
                    "--filter".into(),
                    "status=running".into(),
                    "-q".into(),
                ]))?;
                if !out.success() {
                    return Err(Error::unavailable(format!(
                        "finding the container of service {service} on {}: docker ps failed: {}",
                        exec.describe(),
                        out.stderr_str().trim()
                    )));
                }
                let text = out.stdout_str();
                let ids: Vec<&str> = text.split_whitespace().collect();
                match ids.as_slice() {
                    [id] => Ok(Location::Container {
                        id: (*id).to_string(),
                        service: service.clone(),
                    }),
                    [] => Err(Error::unavailable(format!(
                        "service {service} has no running task container on {} (is it on another node, or down?)",
                        exec.describe()
                    ))),
                    many => Err(Error::unavailable(format!(
                        "service {service} has {} running task containers on {} ({}); expected one",
                        many.len(),
                        exec.describe(),
                        many.join(", ")
                    ))),
                }
            }
        }
    }

    /// `cmd` made to run at this location: unchanged on the host, or as
    /// `docker exec -i <id> <program> <args>` for a container, stdin passed through.
    /// The command's environment becomes `-e NAME=value`, which `docker inspect` of the
    /// exec shows: only non-secret settings (like `TZ`) ever go there.
    pub fn wrap(&self, cmd: Command) -> Command {
        let Location::Container { id, .. } = self else {
            return cmd;
        };
        let mut args = vec!["exec".to_string(), "-i".into()];
        for (k, v) in &cmd.env {
            args.push("-e".into());
            args.push(format!("{k}={v}"));
        }
        args.push(id.clone());
        args.push(cmd.program);
        args.extend(cmd.args);
        Command {
            program: "docker".into(),
            args,
            env: Vec::new(),
            stdin: cmd.stdin,
        }
    }

    /// The options that point a client tool at the server (none in a container, where
    /// the container's defaults apply).
    fn connect_args(&self) -> Vec<String> {
        match self {
            Location::Socket(p) => vec![format!("--socket={}", p.display())],
            // `--protocol=TCP`: without it, host "localhost" means the default socket.
            Location::Tcp { host, port } => vec![
                format!("--host={host}"),
                format!("--port={port}"),
                "--protocol=TCP".into(),
            ],
            Location::Container { .. } => Vec::new(),
        }
    }

    fn describe(&self) -> String {
        match self {
            Location::Socket(p) => format!("mariadb at {}", p.display()),
            Location::Tcp { host, port } => format!("mariadb at {host}:{port}"),
            Location::Container { service, id } => {
                format!("mariadb in service {service} (container {id})")
            }
        }
    }
}
