//! Test data of a given size, fast: a MariaDB table grown by `INSERT … SELECT` doubling
//! (the server copies rows itself, no client round trips) and a volume of mixed files
//! (many small text files, fewer large incompressible ones) written from a xorshift
//! stream. Used by the backup benchmarks and tests that need bulk.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::mariadb::MariaDb;

/// Bytes a generated row takes on disk, roughly (a 224-byte payload plus InnoDB overhead).
const ROW_BYTES: u64 = 300;

/// Every generating session starts with this: the bulk stands for a database that already
/// exists (restored from elsewhere, grown over months), not for writes since the last
/// backup, so it goes to no binary log. Otherwise the first backup after generating would
/// ship a binlog as large as the database, which a bare base backup never pays for.
/// `sql_log_bin=0` rather than `RESET MASTER` afterwards: the server never writes those
/// bytes at all, and binlogs written by anything else are left alone.
const NO_BINLOG: &str = "SET SESSION sql_log_bin=0;";

/// Grow `schema.bulk` until it holds about `bytes` of rows, without binary logging (see
/// [`NO_BINLOG`]); returns the row count. The table has a secondary index, as every large
/// Pimcore table has (versions, object_query_*, application_logs, search_backend_data):
/// an exact `COUNT(*)` scans the smallest index, and a table with only a primary key
/// would make it scan every row's payload, which no real schema here asks for. Changes
/// made later ([`change_rows`]) are logged.
pub fn database(db: &MariaDb, schema: &str, bytes: u64) -> u64 {
    db.sql(&format!(
        "{NO_BINLOG}\n\
         CREATE DATABASE IF NOT EXISTS `{schema}`;\n\
         CREATE TABLE `{schema}`.bulk (id BIGINT PRIMARY KEY AUTO_INCREMENT, \
         payload CHAR(255) NOT NULL, n INT NOT NULL, KEY n (n)) ENGINE=InnoDB;\n\
         INSERT INTO `{schema}`.bulk (payload, n) SELECT REPEAT(MD5(RAND()), 7), seq \
         FROM `{schema}`.seq_1_to_1024;"
    ));
    let target = (bytes / ROW_BYTES).max(1024);
    let mut rows = 1024u64;
    while rows < target {
        let add = (target - rows).min(rows);
        db.sql(&format!(
            "{NO_BINLOG} INSERT INTO `{schema}`.bulk (payload, n) SELECT REPEAT(MD5(RAND()), 7), n \
             FROM `{schema}`.bulk LIMIT {add};"
        ));
        rows += add;
    }
    rows
}

/// Rewrite `pct` percent of the rows of `schema.bulk`: the newest ids, one contiguous
/// range, as an import touching this season's products or an editor working through a
/// category would. Changes land on few pages, which is what page-level incremental
/// backups (and restic's deduplication) rely on; a spread of every (100/pct)-th id would
/// dirty every page while changing the same number of rows.
pub fn change_rows(db: &MariaDb, schema: &str, pct: u64) {
    let pct = pct.clamp(1, 100);
    db.sql(&format!(
        "SELECT MAX(id) INTO @top FROM `{schema}`.bulk;\n\
         UPDATE `{schema}`.bulk SET payload = REPEAT(MD5(RAND()), 7) \
         WHERE id > @top - @top * {pct} DIV 100;"
    ));
}

/// A deterministic, fast, incompressible byte stream.
struct XorShift(u64);

impl XorShift {
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            let b = self.0.to_le_bytes();
            chunk.copy_from_slice(&b[..chunk.len()]);
        }
    }
}

/// Fill `dir` with about `bytes` of mixed files in subdirectories: nine in ten are small
/// text files (1–8 KiB), the rest binary files of up to 4 MiB. Returns the files written.
pub fn volume(dir: &Path, bytes: u64) -> Vec<PathBuf> {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut written = 0u64;
    let mut files = Vec::new();
    let mut buf = vec![0u8; 4 << 20];
    let mut i = 0u64;
    while written < bytes {
        let sub = dir.join(format!("d{:03}", i / 500));
        if i.is_multiple_of(500) {
            fs::create_dir_all(&sub).expect("creating a volume subdirectory");
        }
        let (name, size) = if i % 10 == 9 {
            let span = (4u64 << 20) - (256 << 10);
            (
                format!("asset-{i}.bin"),
                (256 << 10) + (i * 7919 * 131) % span,
            )
        } else {
            (format!("note-{i}.txt"), 1024 + (i * 131) % 7168)
        };
        let size = (size as usize).clamp(1, buf.len());
        let path = sub.join(name);
        let data = &mut buf[..size];
        if i % 10 == 9 {
            rng.fill(data);
        } else {
            for (k, b) in data.iter_mut().enumerate() {
                *b = b"lorem ipsum dolor sit amet\n"[(k + i as usize) % 27];
            }
        }
        fs::File::create(&path)
            .and_then(|mut f| f.write_all(data))
            .expect("writing a volume file");
        written += size as u64;
        files.push(path);
        i += 1;
    }
    files
}

/// Rewrite `pct` percent of `files` with new content of the same size.
pub fn change_files(files: &[PathBuf], pct: u64) {
    let every = (100 / pct.clamp(1, 100)).max(1) as usize;
    let mut rng = XorShift(0x1234_5678_9abc_def1);
    for path in files.iter().step_by(every) {
        let len = fs::metadata(path).map(|m| m.len()).unwrap_or(0) as usize;
        let mut data = vec![0u8; len.max(1)];
        rng.fill(&mut data);
        fs::write(path, data).expect("rewriting a volume file");
    }
}
