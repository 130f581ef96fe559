//! `--textfile DIR`: the Prometheus rendering written for node_exporter's textfile
//! collector, atomically, so the collector never reads half a file.

use std::path::{Path, PathBuf};

use pimops::error::ResultExt;
use pimops::Result;

use crate::format::prometheus;
use crate::report::Entry;

/// `healthcheck.prom`, or `healthcheck_<env>.prom` for a run limited to one env (so one
/// cron entry per env does not overwrite another's metrics).
pub fn file_name(env: Option<&str>) -> String {
    match env {
        Some(env) => format!("healthcheck_{env}.prom"),
        None => "healthcheck.prom".into(),
    }
}

/// Replace `dir/<file_name>` atomically (temp file in `dir`, fsync, rename).
pub fn write(dir: &Path, env: Option<&str>, entries: &[Entry]) -> Result<PathBuf> {
    pimops::metrics::write_textfile(dir, &file_name(env), &prometheus::families(entries))
        .context("--textfile")
}

#[cfg(test)]
mod tests {
    use pimops::health::Status;

    use super::*;
    use crate::report::fixtures::entry;

    #[test]
    fn writes_the_prometheus_text_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let entries = [entry(Some("prod"), "a", Status::Ok, 5, "")];
        let p = write(dir.path(), Some("prod"), &entries).unwrap();
        assert_eq!(p, dir.path().join("healthcheck_prod.prom"));
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            prometheus::render(&entries).unwrap()
        );
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["healthcheck_prod.prom"]);
    }

    #[test]
    fn a_missing_directory_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let e = write(&dir.path().join("nope"), None, &[]).unwrap_err();
        assert!(
            e.to_string().starts_with("--textfile: metrics directory "),
            "{e}"
        );
    }
}
