//! A connection to one server: credentials in a private option file, the commands that
//! run its tools, and the typed queries both backup tools need.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::batch::{option_value, parse_rows, quote_ident, unhex};
use super::dump::DumpCommand;
use super::Location;
use crate::error::{Error, ErrorKind, Result};
use crate::exec::{Command, Exec, Output};
use crate::inventory::{Database, DumpMethod};
use crate::secrets::{self, Secret};

/// The MariaDB programs a [`Connection`] runs against its server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    /// `mariadb`, the SQL client.
    Client,
    /// `mariadb-dump`, the logical backup.
    Dump,
    /// `mariabackup`, the physical backup.
    Backup,
}

impl Tool {
    fn program(self) -> &'static str {
        match self {
            Tool::Client => "mariadb",
            Tool::Dump => "mariadb-dump",
            Tool::Backup => "mariabackup",
        }
    }
}

/// A base table of a user schema.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Table {
    pub schema: String,
    pub name: String,
    /// `None` when the server does not know it (the engine is not loaded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<String>,
}

impl Table {
    pub fn new(schema: impl Into<String>, name: impl Into<String>) -> Table {
        Table {
            schema: schema.into(),
            name: name.into(),
            engine: None,
        }
    }

    /// `` `schema`.`name` `` for SQL.
    pub fn quoted(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.name))
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

/// Where the first event of a binlog file starts (after the magic number).
const BINLOG_HEADER: u64 = 4;

/// `mysql-bin.000041` → `mysql-bin.000042` (same width); `None` without a numeric suffix.
fn next_binlog(name: &str) -> Option<String> {
    let (stem, number) = name.rsplit_once('.')?;
    let n: u64 = number.parse().ok()?;
    Some(format!("{stem}.{:0width$}", n + 1, width = number.len()))
}

/// A point in the binary log: the PITR start of a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BinlogCoordinates {
    pub file: String,
    pub position: u64,
    /// `domain-server-sequence[,…]`; `None` when not recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gtid: Option<String>,
}

/// What the server says about its binary log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinlogStatus {
    /// `@@log_bin`.
    pub enabled: bool,
    /// `@@binlog_format`: `ROW`, `MIXED` or `STATEMENT`.
    pub format: String,
    /// `@@log_bin_basename`, e.g. `/var/lib/mysql/mysql-bin`: the files are `<basename>.NNNNNN`.
    pub basename: Option<PathBuf>,
    /// `@@log_bin_index`.
    pub index: Option<PathBuf>,
    /// `@@gtid_current_pos`.
    pub gtid_current_pos: String,
    /// `SHOW MASTER STATUS`: the active file and position (its `gtid` is `None`; read in
    /// another statement, `gtid_current_pos` may be a write apart).
    pub current: Option<BinlogCoordinates>,
}

/// One file of `SHOW BINARY LOGS`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BinlogFile {
    pub name: String,
    pub size: u64,
}

/// A table `CHECK TABLE` did not pass, with what the server said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckFailure {
    pub table: Table,
    pub message: String,
}

/// Row counts and checksums read in one consistent snapshot, and the binlog position
/// that snapshot stands at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountsAt {
    pub counts: Vec<(Table, u64)>,
    /// `CHECKSUM TABLE` of the tables asked for; `None` for one that does not exist.
    pub checksums: Vec<(Table, Option<u64>)>,
    /// `None` when binary logging is off.
    pub at: Option<BinlogCoordinates>,
}

/// Schemas that belong to the server, not to the application.
const SYSTEM_SCHEMAS: &str = "'mysql','information_schema','performance_schema','sys'";

/// A server reached through `exec` at `location`.
///
/// Credentials live in `[client]` of an option file that every tool gets as
/// `--defaults-extra-file=` (the first option, where MariaDB requires it), never in argv
/// or the environment (both readable by other users, and `docker exec -e` is kept in
/// `docker inspect`). The file is written through the same exec path the tools use, by
/// `sh -c 'umask 077 && mkdir DIR && cat > DIR/client.cnf'` with the content on stdin: a
/// fresh `pimops-mariadb-<random>` directory (mode 0700, `mkdir` fails rather than reuse
/// an existing path) holding a 0600 file, in `/tmp` on the host or — for a service — in
/// the container's `/dev/shm`, where the tools look for it. In a container it must be a
/// tmpfs: a task killed before the connection is dropped would otherwise keep the file
/// in its stopped container's layer on disk. Dropping the connection removes it.
///
/// In a container, dropping the connection also stops every tool still running with its
/// option file: a `docker exec` process outlives its killed client (dockerd keeps
/// reading its output), so a backup abandoned on the host — restic failed, a timeout —
/// would otherwise go on inside the container holding mariabackup's backup locks.
///
/// A pipe (`/dev/fd/N`) would avoid the file but needs an inherited extra descriptor,
/// which std cannot set up without `unsafe`, does not cross `docker exec`, and
/// mariabackup reads its option files more than once.
pub struct Connection<'a> {
    exec: &'a dyn Exec,
    location: Location,
    dir: String,
}

impl<'a> Connection<'a> {
    /// Connect as the inventory says: the location resolved now, the password read from
    /// the secret `password_secret` names (none: socket authentication).
    pub fn from_config(exec: &'a dyn Exec, db: &Database) -> Result<Connection<'a>> {
        let location = Location::resolve(&db.endpoint, exec)?;
        let password = match &db.password_secret {
            Some(name) => Some(secrets::require(name)?),
            None => None,
        };
        Connection::open(exec, location, &db.user, password.as_ref())
    }

    /// Write the option file for `user` (and `password`) at `location`. Nothing is
    /// connected yet: the first query or tool shows whether the credentials work.
    pub fn open(
        exec: &'a dyn Exec,
        location: Location,
        user: &str,
        password: Option<&Secret>,
    ) -> Result<Connection<'a>> {
        let base = match location {
            Location::Container { .. } => "/dev/shm",
            _ => "/tmp",
        };
        let dir = format!("{base}/pimops-mariadb-{:016x}", rand::random::<u64>());
        let mut content = format!("[client]\nuser={}\n", option_value(user));
        if let Some(p) = password {
            content.push_str(&format!("password={}\n", option_value(p.expose())));
        }
        let write = Command::new("sh")
            .args([
                "-c",
                "umask 077 && mkdir -- \"$1\" && cat > \"$1/client.cnf\"",
                "pimops-mariadb",
                &dir,
            ])
            .stdin(content.into_bytes());
        let out = exec.run(&location.wrap(write))?;
        if !out.success() {
            return Err(Error::failed(format!(
                "{}: writing the client option file {dir}/client.cnf on {}: {}",
                location.describe(),
                exec.describe(),
                out.stderr_str().trim()
            )));
        }
        Ok(Connection {
            exec,
            location,
            dir,
        })
    }

    pub fn location(&self) -> &Location {
        &self.location
    }

    /// The private directory on the target (or in the container) holding `client.cnf`;
    /// also the scratch `--target-dir` of a streamed mariabackup.
    pub fn private_dir(&self) -> &str {
        &self.dir
    }

    /// `tool --defaults-extra-file=… <connection options> <args>`, made to run at the
    /// location. The command is valid while this connection lives.
    pub fn command<I, S>(&self, tool: Tool, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let cmd = Command::new(tool.program())
            .arg(format!("--defaults-extra-file={}/client.cnf", self.dir))
            .args(self.location.connect_args())
            .args(args);
        self.location.wrap(cmd)
    }

    /// Run `sql` (statements on stdin) and return the rows of every result set in order,
    /// fields unescaped. Text columns that may be NULL must be selected as `HEX(…)`.
    pub fn query(&self, sql: &str) -> Result<Vec<Vec<String>>> {
        self.query_with(sql, &[])
    }

    /// [`query`](Self::query) with more client options.
    fn query_with(&self, sql: &str, extra: &[&str]) -> Result<Vec<Vec<String>>> {
        let cmd = self
            .command(
                Tool::Client,
                [
                    "--batch",
                    "--skip-column-names",
                    "--default-character-set=utf8mb4",
                ]
                .into_iter()
                .chain(extra.iter().copied()),
            )
            .stdin(sql.as_bytes().to_vec());
        let out = self.exec.run(&cmd)?;
        if !out.success() {
            return Err(self.tool_error("mariadb", &out));
        }
        Ok(parse_rows(&out.stdout_str()))
    }

    /// An error for a tool that failed against this server, classified by the client
    /// error code on its stderr (which never holds the password: it is not on argv).
    pub(crate) fn tool_error(&self, tool: &str, out: &Output) -> Error {
        let stderr = out.stderr_str();
        let text = stderr.trim();
        let kind = if text.contains("ERROR 1045") || text.contains("ERROR 1698") {
            ErrorKind::Refused
        } else if [
            "ERROR 2002",
            "ERROR 2003",
            "ERROR 2005",
            "ERROR 2006",
            "ERROR 2013",
        ]
        .iter()
        .any(|code| text.contains(code))
        {
            ErrorKind::Unavailable
        } else {
            ErrorKind::Failed
        };
        let status = match out.status {
            Some(c) => format!("exit code {c}"),
            None => "killed by a signal".into(),
        };
        Error::new(
            kind,
            format!(
                "{}: {tool} failed ({status}): {text}",
                self.location.describe()
            ),
        )
    }

    /// `SELECT VERSION()`, e.g. `10.11.6-MariaDB-0+deb12u1-log`.
    pub fn server_version(&self) -> Result<String> {
        let rows = self.query("SELECT VERSION();")?;
        single(&rows, "VERSION()").map(str::to_string)
    }

    /// The base tables of every non-system schema, sorted by schema and name.
    pub fn tables(&self) -> Result<Vec<Table>> {
        let sql = format!(
            "SELECT HEX(TABLE_SCHEMA), HEX(TABLE_NAME), HEX(ENGINE) FROM information_schema.TABLES \
             WHERE TABLE_TYPE IN ('BASE TABLE', 'SYSTEM VERSIONED') \
             AND TABLE_SCHEMA NOT IN ({SYSTEM_SCHEMAS}) ORDER BY TABLE_SCHEMA, TABLE_NAME;"
        );
        self.query(&sql)?
            .iter()
            .map(|row| match row.as_slice() {
                [schema, name, engine] => Ok(Table {
                    schema: unhex(schema)?.unwrap_or_default(),
                    name: unhex(name)?.unwrap_or_default(),
                    engine: unhex(engine)?,
                }),
                _ => Err(unexpected("the table list", row)),
            })
            .collect()
    }

    /// `SELECT COUNT(*)` of each table, all in one consistent-snapshot transaction (so
    /// InnoDB tables are counted at one moment).
    pub fn exact_row_counts(&self, tables: &[Table]) -> Result<Vec<(Table, u64)>> {
        if tables.is_empty() {
            return Ok(Vec::new());
        }
        let mut sql = String::from("START TRANSACTION WITH CONSISTENT SNAPSHOT;\n");
        for (i, t) in tables.iter().enumerate() {
            sql.push_str(&format!("SELECT {i}, COUNT(*) FROM {};\n", t.quoted()));
        }
        sql.push_str("COMMIT;\n");
        let rows = self.query(&sql)?;
        let mut counts = vec![None; tables.len()];
        for row in &rows {
            let parsed = match row.as_slice() {
                [i, n] => i.parse::<usize>().ok().zip(n.parse::<u64>().ok()),
                _ => None,
            };
            match parsed {
                Some((i, n)) if i < counts.len() => counts[i] = Some(n),
                _ => return Err(unexpected("row counts", row)),
            }
        }
        tables
            .iter()
            .zip(counts)
            .map(|(t, n)| {
                n.map(|n| (t.clone(), n))
                    .ok_or_else(|| Error::failed(format!("no row count for {t}")))
            })
            .collect()
    }

    /// Exact row counts of `tables` and the binlog position consistent with them, read in
    /// one `START TRANSACTION WITH CONSISTENT SNAPSHOT`: MariaDB's `binlog_snapshot_file`
    /// and `binlog_snapshot_position` status say where in the binary log that snapshot
    /// stands, so replaying a backup's binlogs up to that position reproduces these counts
    /// exactly even while the application keeps writing. The position is `None` when
    /// binary logging is off.
    ///
    /// `CHECKSUM TABLE` of `checksum` runs in the same snapshot (MariaDB 10.11 computes it
    /// from the transaction's read view: checked with a concurrent insert), so the
    /// checksums hold at the same position as the counts.
    pub fn counts_at_snapshot(&self, tables: &[Table], checksum: &[Table]) -> Result<CountsAt> {
        self.counts_at_snapshot_tagged(tables, checksum, None)
    }

    /// [`counts_at_snapshot`](Self::counts_at_snapshot) with each counting statement
    /// carrying the comment `/* tag */`, so that [`kill_tagged`](Self::kill_tagged) can
    /// interrupt it from another connection. `tag` is letters, digits, `-` and `_`.
    pub fn counts_at_snapshot_tagged(
        &self,
        tables: &[Table],
        checksum: &[Table],
        tag: Option<&str>,
    ) -> Result<CountsAt> {
        let comment = match tag {
            Some(t) => format!("/* {} */ ", checked_tag(t)?),
            None => String::new(),
        };
        let mut sql = String::from(
            "START TRANSACTION WITH CONSISTENT SNAPSHOT;\n\
             SHOW SESSION STATUS LIKE 'binlog_snapshot_%';\n",
        );
        for (i, t) in tables.iter().enumerate() {
            sql.push_str(&format!(
                "SELECT {comment}{i}, COUNT(*) FROM {};\n",
                t.quoted()
            ));
        }
        for t in checksum {
            sql.push_str(&format!("CHECKSUM TABLE {comment}{};\n", t.quoted()));
        }
        sql.push_str("COMMIT;\n");
        // The client drops comments unless told to keep them.
        let rows = match tag {
            Some(_) => self.query_with(&sql, &["--comments"])?,
            None => self.query(&sql)?,
        };
        let checksum_names: Vec<String> = checksum.iter().map(Table::to_string).collect();
        let mut sums: Vec<Option<Option<u64>>> = vec![None; checksum.len()];
        let mut counts = vec![None; tables.len()];
        let (mut file, mut position) = (None, None);
        for row in &rows {
            // A CHECKSUM TABLE row names its table as `schema.table`, which no count row does.
            let sum_of = row
                .first()
                .and_then(|t| checksum_names.iter().position(|n| n == t));
            if let (Some(i), [_, v]) = (sum_of, row.as_slice()) {
                sums[i] = Some(match v.as_str() {
                    "NULL" => None,
                    v => Some(
                        v.parse::<u64>()
                            .map_err(|_| unexpected("CHECKSUM TABLE", row))?,
                    ),
                });
                continue;
            }
            // The server spells the names `Binlog_snapshot_file`, `Binlog_snapshot_position`.
            let name = row
                .first()
                .map(|n| n.to_ascii_lowercase())
                .unwrap_or_default();
            match row.as_slice() {
                [_, value] if name == "binlog_snapshot_file" => file = Some(value.clone()),
                [_, value] if name == "binlog_snapshot_position" => {
                    position = Some(
                        value
                            .parse::<u64>()
                            .map_err(|_| unexpected("binlog_snapshot_position", row))?,
                    )
                }
                [_, _] if name.starts_with("binlog_snapshot_") => {}
                [i, n] => match i.parse::<usize>().ok().zip(n.parse::<u64>().ok()) {
                    Some((i, n)) if i < counts.len() => counts[i] = Some(n),
                    _ => return Err(unexpected("row counts", row)),
                },
                _ => return Err(unexpected("row counts", row)),
            }
        }
        let counted = tables
            .iter()
            .zip(counts)
            .map(|(t, n)| {
                n.map(|n| (t.clone(), n))
                    .ok_or_else(|| Error::failed(format!("no row count for {t}")))
            })
            .collect::<Result<Vec<_>>>()?;
        let checksums = checksum
            .iter()
            .zip(sums)
            .map(|(t, v)| {
                v.map(|v| (t.clone(), v))
                    .ok_or_else(|| Error::failed(format!("no CHECKSUM TABLE row for {t}")))
            })
            .collect::<Result<Vec<_>>>()?;
        // With binary logging off the status variables are empty (file "", position 0).
        let at = match (file, position) {
            (Some(file), Some(position)) if !file.is_empty() => Some(BinlogCoordinates {
                file,
                position,
                gtid: None,
            }),
            _ => None,
        };
        Ok(CountsAt {
            counts: counted,
            checksums,
            at,
        })
    }

    /// `KILL QUERY` every statement of another connection whose text holds `/* tag */`
    /// (see [`counts_at_snapshot_tagged`](Self::counts_at_snapshot_tagged)); how many
    /// there were. Between two statements a tagged session runs none, so a caller that
    /// must stop it repeats this until the session has ended.
    pub fn kill_tagged(&self, tag: &str) -> Result<usize> {
        let tag = checked_tag(tag)?;
        let rows = self.query(&format!(
            "SELECT ID FROM information_schema.PROCESSLIST \
             WHERE INFO LIKE '%/* {tag} */%' AND ID <> CONNECTION_ID();"
        ))?;
        let ids = rows
            .iter()
            .map(|r| match r.as_slice() {
                [id] => id.parse::<u64>().map_err(|_| unexpected("PROCESSLIST", r)),
                _ => Err(unexpected("PROCESSLIST", r)),
            })
            .collect::<Result<Vec<_>>>()?;
        if ids.is_empty() {
            return Ok(0);
        }
        let kills: String = ids.iter().map(|id| format!("KILL QUERY {id};\n")).collect();
        // A statement that ended meanwhile is "Unknown thread id" (1094): with --force the
        // client goes on to the others, and the error is no failure of this call.
        let cmd = self
            .command(Tool::Client, ["--batch", "--force"])
            .stdin(kills.into_bytes());
        let out = self.exec.run(&cmd)?;
        let only_ended = out
            .stderr_str()
            .lines()
            .filter(|l| l.starts_with("ERROR"))
            .all(|l| l.starts_with("ERROR 1094"));
        if !out.success() && !only_ended {
            return Err(self.tool_error("mariadb", &out));
        }
        Ok(ids.len())
    }

    /// `CHECKSUM TABLE` of each table: `None` for a table that does not exist.
    pub fn checksum_tables(&self, tables: &[Table]) -> Result<Vec<(Table, Option<u64>)>> {
        if tables.is_empty() {
            return Ok(Vec::new());
        }
        // One statement per table, one row each: the rows come back in this order.
        let sql: String = tables
            .iter()
            .map(|t| format!("CHECKSUM TABLE {};\n", t.quoted()))
            .collect();
        let rows = self.query(&sql)?;
        if rows.len() != tables.len() {
            return Err(Error::failed(format!(
                "CHECKSUM TABLE returned {} rows for {} tables",
                rows.len(),
                tables.len()
            )));
        }
        tables
            .iter()
            .zip(&rows)
            .map(|(t, row)| match row.last().map(String::as_str) {
                Some("NULL") => Ok((t.clone(), None)),
                Some(n) => n
                    .parse::<u64>()
                    .map(|n| (t.clone(), Some(n)))
                    .map_err(|_| unexpected("CHECKSUM TABLE", row)),
                None => Err(unexpected("CHECKSUM TABLE", row)),
            })
            .collect()
    }

    /// `CHECK TABLE` of each table; the tables that did not pass, with the server's words.
    pub fn check_tables(&self, tables: &[Table]) -> Result<Vec<CheckFailure>> {
        if tables.is_empty() {
            return Ok(Vec::new());
        }
        // CHECK TABLE may print several rows per table: a one-column marker row before
        // each says which table the following rows belong to.
        let sql: String = tables
            .iter()
            .enumerate()
            .map(|(i, t)| format!("SELECT 'pimops-check-{i}';\nCHECK TABLE {};\n", t.quoted()))
            .collect();
        let rows = self.query(&sql)?;
        let mut messages: Vec<Vec<String>> = vec![Vec::new(); tables.len()];
        let mut passed = vec![false; tables.len()];
        let mut current: Option<usize> = None;
        for row in &rows {
            match row.as_slice() {
                [marker] => {
                    current = marker
                        .strip_prefix("pimops-check-")
                        .and_then(|i| i.parse::<usize>().ok())
                        .filter(|i| *i < tables.len());
                    if current.is_none() {
                        return Err(unexpected("CHECK TABLE", row));
                    }
                }
                [_, _, msg_type, text] => {
                    let Some(i) = current else {
                        return Err(unexpected("CHECK TABLE", row));
                    };
                    match msg_type.to_ascii_lowercase().as_str() {
                        "status" if text == "OK" || text == "Table is already up to date" => {
                            passed[i] = true
                        }
                        "note" | "info" => {}
                        kind => messages[i].push(format!("{kind}: {text}")),
                    }
                }
                _ => return Err(unexpected("CHECK TABLE", row)),
            }
        }
        Ok(tables
            .iter()
            .zip(passed.into_iter().zip(messages))
            .filter(|(_, (ok, msgs))| !ok || !msgs.is_empty())
            .map(|(t, (_, msgs))| CheckFailure {
                table: t.clone(),
                message: if msgs.is_empty() {
                    "no OK status".into()
                } else {
                    msgs.join("; ")
                },
            })
            .collect())
    }

    /// The binary log settings and the current position.
    pub fn binlog_status(&self) -> Result<BinlogStatus> {
        let rows = self.query(
            "SELECT @@log_bin, @@binlog_format, HEX(@@log_bin_basename), HEX(@@log_bin_index), \
             HEX(@@gtid_current_pos);\nSHOW MASTER STATUS;",
        )?;
        let (vars, master) = match rows.split_first() {
            Some((vars, rest)) => (vars, rest.first()),
            None => return Err(Error::failed("the binlog status query returned nothing")),
        };
        let [enabled, format, basename, index, gtid] = vars.as_slice() else {
            return Err(unexpected("the binlog variables", vars));
        };
        let current = match master.map(Vec::as_slice) {
            None => None,
            Some([file, position, ..]) => Some(BinlogCoordinates {
                file: file.clone(),
                position: position
                    .parse()
                    .map_err(|_| unexpected("SHOW MASTER STATUS", master.unwrap_or(vars)))?,
                gtid: None,
            }),
            Some(_) => return Err(unexpected("SHOW MASTER STATUS", master.unwrap_or(vars))),
        };
        Ok(BinlogStatus {
            enabled: enabled == "1",
            format: format.clone(),
            basename: unhex(basename)?.map(PathBuf::from),
            index: unhex(index)?.map(PathBuf::from),
            gtid_current_pos: unhex(gtid)?.unwrap_or_default(),
            current,
        })
    }

    /// `FLUSH BINARY LOGS`: close the active binlog so every earlier one can be shipped.
    pub fn flush_binary_logs(&self) -> Result<()> {
        self.query("FLUSH BINARY LOGS;").map(drop)
    }

    /// Whether anything that changes data was logged between `from` (an event boundary,
    /// e.g. `SHOW MASTER STATUS` earlier) and `to`, in the same file or in the next one
    /// (one rotation apart): `false` when only the server's own bookkeeping lies there (a
    /// flush ends the file with a rotate event and starts the next with a format
    /// description, a GTID list and, a moment later, a binlog checkpoint). Anything else,
    /// farther apart, or a file name no binlog can have counts as written.
    pub fn logged_between(&self, from: &BinlogCoordinates, to: &BinlogCoordinates) -> Result<bool> {
        if from.file == to.file {
            if to.position < from.position {
                return Ok(true);
            }
            return Ok(!self.only_bookkeeping(&from.file, from.position, Some(to.position))?);
        }
        if next_binlog(&from.file).as_deref() != Some(to.file.as_str()) {
            return Ok(true);
        }
        let quiet = self.only_bookkeeping(&from.file, from.position, None)?
            && self.only_bookkeeping(&to.file, BINLOG_HEADER, Some(to.position))?;
        Ok(!quiet)
    }

    /// Whether the events of binlog `file` from `from` up to `to` (or to its end, which
    /// must be a rotate event) are bookkeeping only.
    fn only_bookkeeping(&self, file: &str, from: u64, to: Option<u64>) -> Result<bool> {
        if to == Some(from) {
            return Ok(true);
        }
        if file.is_empty()
            || !file
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        {
            return Ok(false);
        }
        // Bounded: a quiet stretch is a few events; more than that is not quiet anyway.
        let rows = self.query(&format!(
            "SHOW BINLOG EVENTS IN '{file}' FROM {from} LIMIT 16;"
        ))?;
        let mut reached = from;
        for row in &rows {
            // Log_name, Pos, Event_type, Server_id, End_log_pos, Info
            let (Some(kind), Some(end)) =
                (row.get(2), row.get(4).and_then(|e| e.parse::<u64>().ok()))
            else {
                return Err(unexpected("SHOW BINLOG EVENTS", row));
            };
            if to.is_some_and(|t| end > t) {
                break;
            }
            match kind.as_str() {
                "Binlog_checkpoint" | "Gtid_list" | "Format_desc" => reached = end,
                "Rotate" if to.is_none() => return Ok(true),
                _ => return Ok(false),
            }
        }
        Ok(to == Some(reached))
    }

    /// `SHOW BINARY LOGS`, oldest first; the last one is the active (still open) file.
    pub fn binlog_files(&self) -> Result<Vec<BinlogFile>> {
        self.query("SHOW BINARY LOGS;")?
            .iter()
            .map(|row| match row.as_slice() {
                [name, size, ..] => size
                    .parse()
                    .map(|size| BinlogFile {
                        name: name.clone(),
                        size,
                    })
                    .map_err(|_| unexpected("SHOW BINARY LOGS", row)),
                _ => Err(unexpected("SHOW BINARY LOGS", row)),
            })
            .collect()
    }

    /// Where the binlog `name` (from [`Connection::binlog_files`]) is, on the host or
    /// inside the container: next to `@@log_bin_basename`. A local server's closed files
    /// can be read there directly; see [`Connection::binlog_reader`] otherwise.
    pub fn binlog_path(&self, status: &BinlogStatus, name: &str) -> Result<PathBuf> {
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            return Err(Error::data(format!("{name:?} is not a binlog file name")));
        }
        let dir = status
            .basename
            .as_deref()
            .and_then(|b| b.parent())
            .ok_or_else(|| {
                Error::failed(format!(
                    "{}: binary logging is off (no @@log_bin_basename)",
                    self.location.describe()
                ))
            })?;
        Ok(dir.join(name))
    }

    /// `cat` of the binlog `name` where the server is (in the container for a service):
    /// spawn it and stream its stdout. Only closed files are complete.
    pub fn binlog_reader(&self, status: &BinlogStatus, name: &str) -> Result<Command> {
        let path = self.binlog_path(status, name)?;
        let cat = Command::new("cat").args(["--".to_string(), path.display().to_string()]);
        Ok(self.location.wrap(cat))
    }

    /// The physical backup producer: `mariabackup --backup --stream=xbstream` to stdout.
    /// It must run where the datadir is, which the location gives (the host, or the
    /// container for a service). Grants: RELOAD, PROCESS, LOCK TABLES, BINLOG MONITOR.
    pub fn physical_backup(&self) -> DumpCommand {
        let command = self.command(
            Tool::Backup,
            [
                "--backup".to_string(),
                "--stream=xbstream".into(),
                format!("--target-dir={}/backup", self.dir),
            ],
        );
        DumpCommand::new(DumpMethod::Physical, command)
    }

    /// The logical backup producer: `mariadb-dump` of all databases in one consistent
    /// InnoDB snapshot, to stdout. With binary logging on, `--master-data=2 --gtid`
    /// records the binlog file, position and GTID as comments (the PITR start; see
    /// [`super::dump_coordinates`]); that needs RELOAD for a brief global read lock.
    pub fn logical_dump(&self) -> Result<DumpCommand> {
        let log_bin = self.query("SELECT @@log_bin;")?;
        let mut args = vec![
            "--single-transaction",
            "--routines",
            "--events",
            "--triggers",
            "--all-databases",
        ];
        if single(&log_bin, "@@log_bin")? == "1" {
            args.extend(["--master-data=2", "--gtid"]);
        }
        Ok(DumpCommand::new(
            DumpMethod::Logical,
            self.command(Tool::Dump, args),
        ))
    }
}

/// `sh -c STOP_AND_REMOVE pimops-mariadb DIR`: SIGTERM to every other process whose
/// command line names a file in DIR (the tools given `--defaults-extra-file=DIR/…`), then
/// remove DIR. Only `/proc`, `tr` and `kill`: the image may have no procps.
const STOP_AND_REMOVE: &str = r#"d=$1
for p in /proc/[0-9]*; do
  pid=${p#/proc/}
  [ "$pid" = "$$" ] && continue
  case "$(tr '\0' ' ' < "$p/cmdline" 2>/dev/null)" in
    *"$d/"*) kill -TERM "$pid" 2>/dev/null ;;
  esac
done
rm -rf -- "$d""#;

impl Drop for Connection<'_> {
    fn drop(&mut self) {
        let cleanup = match self.location {
            Location::Container { .. } => {
                Command::new("sh").args(["-c", STOP_AND_REMOVE, "pimops-mariadb", &self.dir])
            }
            _ => Command::new("rm").args(["-rf", "--", &self.dir]),
        };
        match self.exec.run(&self.location.wrap(cleanup)) {
            Ok(out) if out.success() => {}
            // A stopped container took its tmpfs, and the file in it, along.
            Ok(out)
                if matches!(self.location, Location::Container { .. })
                    && out.stderr_str().contains("is not running") =>
            {
                log::debug!("{}: already stopped", self.location.describe())
            }
            Ok(out) => log::warn!(
                "removing {} on {}: {}",
                self.dir,
                self.exec.describe(),
                out.stderr_str().trim()
            ),
            Err(e) => log::warn!("removing {} on {}: {e}", self.dir, self.exec.describe()),
        }
    }
}

/// A statement tag as `counts_at_snapshot_tagged` and `kill_tagged` put it into SQL.
fn checked_tag(tag: &str) -> Result<&str> {
    let fine = !tag.is_empty()
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    match fine {
        true => Ok(tag),
        false => Err(Error::failed(format!(
            "statement tag {tag:?}: only letters, digits, - and _"
        ))),
    }
}

fn single<'r>(rows: &'r [Vec<String>], what: &str) -> Result<&'r str> {
    match rows {
        [row] if row.len() == 1 => Ok(&row[0]),
        _ => Err(Error::failed(format!(
            "{what}: expected one value, got {} rows",
            rows.len()
        ))),
    }
}

fn unexpected(what: &str, row: &[String]) -> Error {
    Error::failed(format!(
        "unexpected output from mariadb for {what}: {:?}",
        row.join("\t")
    ))
}
