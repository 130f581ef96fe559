//! Backup producers and how to tell that one finished: the stream `backup-run` pipes into
//! `restic backup --stdin` is only a backup if the producer says so.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::path::Path;
use std::sync::{Arc, Mutex};

use super::connection::BinlogCoordinates;
use crate::error::{Error, Result};
use crate::exec::Command;
use crate::inventory::DumpMethod;

/// What mariabackup prints on stderr, and only on success.
const MARIABACKUP_OK: &str = "completed OK!";
/// The last line of a complete mariadb-dump (with or without the date).
const DUMP_COMPLETED: &str = "-- Dump completed";
/// How much of a stream's start and end [`StreamTap`] keeps.
const HEAD_BYTES: usize = 16 * 1024;
const TAIL_BYTES: usize = 8 * 1024;
/// How much of a failed producer's stderr goes into the error.
const STDERR_TAIL_LINES: usize = 15;

/// A producer command (stdout is the backup stream) and its success predicate. It
/// refers to its [`super::Connection`]'s option file: keep the connection alive until the
/// process has exited.
#[derive(Debug, Clone)]
pub struct DumpCommand {
    pub method: DumpMethod,
    pub command: Command,
}

impl DumpCommand {
    pub(crate) fn new(method: DumpMethod, command: Command) -> DumpCommand {
        DumpCommand { method, command }
    }

    /// This physical backup with its LSN bookkeeping for incremental backups: mariabackup
    /// also writes its `xtrabackup_checkpoints` into `extra_lsndir`, and with `basedir`
    /// (the checkpoints of the backup it builds on) streams only the pages changed since.
    /// Both paths are where mariabackup runs (the host, for a socket or TCP location).
    pub fn with_lsn_dirs(mut self, basedir: Option<&Path>, extra_lsndir: &Path) -> DumpCommand {
        if let Some(b) = basedir {
            self.command = self
                .command
                .arg(format!("--incremental-basedir={}", b.display()));
        }
        self.command = self
            .command
            .arg(format!("--extra-lsndir={}", extra_lsndir.display()));
        self
    }

    /// The tool's name, for messages.
    pub fn name(&self) -> &'static str {
        match self.method {
            DumpMethod::Physical => "mariabackup",
            DumpMethod::Logical => "mariadb-dump",
        }
    }

    /// The line the producer must print on stderr to have succeeded (mariabackup's
    /// `completed OK!`), for `restic::Producer::success_marker`.
    pub fn stderr_marker(&self) -> Option<&'static str> {
        match self.method {
            DumpMethod::Physical => Some(MARIABACKUP_OK),
            DumpMethod::Logical => None,
        }
    }

    /// Whether the producer succeeded: exit status 0 (`None`: killed by a signal), and
    /// mariabackup's `completed OK!` on `stderr`, or mariadb-dump's `-- Dump completed`
    /// as the last line of `stdout_tail` (the end of the stream, from a [`TapHandle`]).
    /// The error carries the end of stderr.
    pub fn check(&self, status: Option<i32>, stderr: &[u8], stdout_tail: &[u8]) -> Result<()> {
        let stderr = String::from_utf8_lossy(stderr);
        let problem = match status {
            None => Some("was killed by a signal".to_string()),
            Some(0) => None,
            Some(c) => Some(format!("exited with code {c}")),
        }
        .or_else(|| match self.method {
            DumpMethod::Physical if !stderr.lines().any(|l| l.contains(MARIABACKUP_OK)) => {
                Some(format!("exited 0 without printing {MARIABACKUP_OK:?}"))
            }
            DumpMethod::Logical if !last_line(stdout_tail).starts_with(DUMP_COMPLETED) => Some(
                format!("exited 0 but the dump does not end with {DUMP_COMPLETED:?}"),
            ),
            _ => None,
        });
        match problem {
            None => Ok(()),
            Some(p) => Err(Error::failed(format!(
                "{} {p}; its stderr ends:\n{}",
                self.name(),
                tail_lines(&stderr, STDERR_TAIL_LINES)
            ))),
        }
    }
}

fn last_line(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .to_string()
}

fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[derive(Default)]
struct Tapped {
    head: Vec<u8>,
    tail: VecDeque<u8>,
}

/// A reader that passes a stream through unchanged while keeping its first 16 KiB and
/// last 8 KiB, so a dump can be checked ([`DumpCommand::check`]) and its binlog
/// coordinates read ([`dump_coordinates`]) after it was streamed elsewhere.
pub struct StreamTap<R> {
    inner: R,
    state: Arc<Mutex<Tapped>>,
}

/// The kept start and end of a [`StreamTap`]'s stream, readable from another thread.
#[derive(Clone)]
pub struct TapHandle {
    state: Arc<Mutex<Tapped>>,
}

impl<R: Read> StreamTap<R> {
    pub fn new(inner: R) -> (StreamTap<R>, TapHandle) {
        let state = Arc::new(Mutex::new(Tapped::default()));
        let handle = TapHandle {
            state: Arc::clone(&state),
        };
        (StreamTap { inner, state }, handle)
    }
}

impl<R: Read> Read for StreamTap<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let data = &buf[..n];
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let room = HEAD_BYTES.saturating_sub(st.head.len());
        st.head.extend_from_slice(&data[..room.min(n)]);
        let keep = &data[n.saturating_sub(TAIL_BYTES)..];
        st.tail.extend(keep);
        let excess = st.tail.len().saturating_sub(TAIL_BYTES);
        st.tail.drain(..excess);
        Ok(n)
    }
}

impl TapHandle {
    pub fn head(&self) -> Vec<u8> {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .head
            .clone()
    }
    pub fn tail(&self) -> Vec<u8> {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.tail.iter().copied().collect()
    }
}

/// The binlog coordinates `mariadb-dump --master-data=2 --gtid` wrote as comments: the
/// file and position near the start (`-- CHANGE MASTER TO MASTER_LOG_FILE='…',
/// MASTER_LOG_POS=…;`), the GTID near the end (`-- SET GLOBAL gtid_slave_pos='…';`).
pub fn dump_coordinates(head: &[u8], tail: &[u8]) -> Option<BinlogCoordinates> {
    let head = String::from_utf8_lossy(head);
    let (file, position) = head.lines().find_map(|l| {
        let rest = l.strip_prefix("-- CHANGE MASTER TO MASTER_LOG_FILE='")?;
        let (file, rest) = rest.split_once("', MASTER_LOG_POS=")?;
        let pos = rest.strip_suffix(';')?.parse::<u64>().ok()?;
        Some((file.to_string(), pos))
    })?;
    let tail = String::from_utf8_lossy(tail);
    let gtid = tail.lines().find_map(|l| {
        let g = l
            .strip_prefix("-- SET GLOBAL gtid_slave_pos='")?
            .strip_suffix("';")?;
        Some(g.to_string())
    });
    Some(BinlogCoordinates {
        file,
        position,
        gtid,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn physical() -> DumpCommand {
        DumpCommand::new(DumpMethod::Physical, Command::new("mariabackup"))
    }
    fn logical() -> DumpCommand {
        DumpCommand::new(DumpMethod::Logical, Command::new("mariadb-dump"))
    }

    #[test]
    fn physical_needs_exit_zero_and_completed_ok() {
        let ok = b"[00] 2026-01-01 10:00:00 completed OK!\n";
        assert!(physical().check(Some(0), ok, b"").is_ok());
        let e = physical()
            .check(Some(0), b"[00] streaming\n", b"")
            .unwrap_err();
        assert!(e.to_string().contains("without printing"), "{e}");
        assert!(e.to_string().contains("streaming"), "{e}");
        assert!(physical().check(Some(1), ok, b"").is_err());
        assert!(physical().check(None, ok, b"").is_err());
        assert_eq!(physical().stderr_marker(), Some("completed OK!"));
    }

    #[test]
    fn lsn_dirs_go_last_on_the_command_line() {
        let full = physical().with_lsn_dirs(None, Path::new("/s/lsn.new"));
        assert_eq!(full.command.args, ["--extra-lsndir=/s/lsn.new"]);
        let inc = physical().with_lsn_dirs(Some(Path::new("/s/lsn")), Path::new("/s/lsn.new"));
        assert_eq!(
            inc.command.args,
            ["--incremental-basedir=/s/lsn", "--extra-lsndir=/s/lsn.new"]
        );
    }

    #[test]
    fn logical_needs_the_completion_line_last() {
        let done = b"INSERT ...;\n-- Dump completed on 2026-01-01 10:00:00\n\n";
        assert!(logical().check(Some(0), b"", done).is_ok());
        assert!(logical().check(Some(0), b"", b"INSERT ...;\n").is_err());
        assert!(logical()
            .check(Some(2), b"mariadb-dump: Got error", done)
            .is_err());
        assert_eq!(logical().stderr_marker(), None);
    }

    #[test]
    fn tap_keeps_head_and_tail_of_a_long_stream() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let (mut tap, handle) = StreamTap::new(io::Cursor::new(data.clone()));
        let mut out = Vec::new();
        let mut buf = [0u8; 3000];
        loop {
            let n = tap.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        assert_eq!(out, data);
        assert_eq!(handle.head(), data[..HEAD_BYTES]);
        assert_eq!(handle.tail(), data[data.len() - TAIL_BYTES..]);
    }

    #[test]
    fn coordinates_from_dump_comments() {
        let head = b"-- CHANGE MASTER TO MASTER_USE_GTID=slave_pos;\n\
            -- CHANGE MASTER TO MASTER_LOG_FILE='mysql-bin.000002', MASTER_LOG_POS=817;\n";
        let tail = b"-- SET GLOBAL gtid_slave_pos='0-1-3';\n-- Dump completed\n";
        assert_eq!(
            dump_coordinates(head, tail),
            Some(BinlogCoordinates {
                file: "mysql-bin.000002".into(),
                position: 817,
                gtid: Some("0-1-3".into())
            })
        );
        assert_eq!(dump_coordinates(b"-- nothing\n", tail), None);
    }
}
