//! Starting the programs whose stdout restic stores, as producers restic's wrapper watches:
//! mariabackup must print "completed OK!", mariadb-dump's stream must end with
//! "-- Dump completed", and every one must exit 0. They run on this machine, or inside a
//! Swarm task container through `docker exec -i` (the command is already wrapped).

use std::io::{self, Read};
use std::process::{Child, ChildStdout, Stdio};

use pimops::exec::Command;
use pimops::inventory::DumpMethod;
use pimops::mariadb::{DumpCommand, StreamTap, TapHandle};
use pimops::restic::Producer;
use pimops::{Error, Result};

/// The last line of a complete mariadb-dump.
const DUMP_COMPLETED: &str = "-- Dump completed";

/// Start `cmd` with stdout and stderr piped.
pub fn spawn(cmd: &Command) -> Result<Child> {
    std::process::Command::new(&cmd.program)
        .args(&cmd.args)
        .envs(cmd.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => Error::config(format!(
                "{}: command not found (scripts/install-deps installs it)",
                cmd.program
            )),
            _ => Error::io(format!("starting {}", cmd.program), e),
        })
}

/// The database producer, and (for a logical dump) the kept start and end of its stream,
/// where mariadb-dump wrote the binlog coordinates.
pub fn database(dump: &DumpCommand) -> Result<(Producer, Option<TapHandle>)> {
    let mut child = spawn(&dump.command)?;
    match dump.method {
        DumpMethod::Physical => {
            let mut p = Producer::from_child(dump.name(), child)?;
            if let Some(marker) = dump.stderr_marker() {
                p = p.success_marker(marker);
            }
            Ok((p, None))
        }
        DumpMethod::Logical => {
            let (Some(stdout), stderr) = (child.stdout.take(), child.stderr.take()) else {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error::failed("mariadb-dump: its stdout is not a pipe"));
            };
            let (tap, handle) = StreamTap::new(stdout);
            let reader = CompletedDump {
                tap,
                handle: handle.clone(),
            };
            let p = Producer::from_parts(
                dump.name(),
                Box::new(reader),
                stderr.map(|e| Box::new(e) as Box<dyn Read + Send>),
                Box::new(child),
            );
            Ok((p, Some(handle)))
        }
    }
}

/// A `cat` of one binlog file (closed files only: their size is final).
pub fn plain(name: &str, cmd: &Command) -> Result<Producer> {
    Producer::from_child(name, spawn(cmd)?)
}

/// mariadb-dump's stdout, turned into a read error at its end unless the dump finished:
/// a dump cut short by a dying server can still exit 0 on some paths, and restic must be
/// interrupted before it sees a clean end of input.
struct CompletedDump {
    tap: StreamTap<ChildStdout>,
    handle: TapHandle,
}

impl Read for CompletedDump {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.tap.read(buf)?;
        if n == 0 && !buf.is_empty() {
            let tail = self.handle.tail();
            let text = String::from_utf8_lossy(&tail);
            let last = text.lines().rev().find(|l| !l.trim().is_empty());
            if !last.is_some_and(|l| l.starts_with(DUMP_COMPLETED)) {
                return Err(io::Error::other(format!(
                    "the dump does not end with {DUMP_COMPLETED:?}"
                )));
            }
        }
        Ok(n)
    }
}
