//! Files replaced whole: written aside, synced, then renamed over the old one, so that a
//! reader (node_exporter, nginx, the next run of a tool, a tool killed mid-write) sees
//! either the old content or the new, never half of either.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Write `bytes` to `path` atomically, creating its directory if missing. With `mode`,
/// the file gets exactly that mode (the umask does not narrow it: a key file wants
/// 0600, a metrics file 0644 for an exporter running as another user); without, the
/// usual 0666 minus the umask. The rename is synced too, so the new content survives a
/// crash once this returns. Nothing is left aside when it fails.
pub fn write(path: &Path, bytes: &[u8], mode: Option<u32>) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let aside = aside_path(path);
    let written = write_aside(&aside, bytes, mode).and_then(|()| std::fs::rename(&aside, path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&aside);
        return Err(e);
    }
    // Failing to sync the directory is not worth failing a write that has happened.
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

fn write_aside(aside: &Path, bytes: &[u8], mode: Option<u32>) -> std::io::Result<()> {
    let mut open = OpenOptions::new();
    open.write(true).create_new(true);
    if let Some(m) = mode {
        open.mode(m);
    }
    let mut f = open.open(aside)?;
    if let Some(m) = mode {
        f.set_permissions(std::fs::Permissions::from_mode(m))?;
    }
    f.write_all(bytes)?;
    f.sync_all()
}

/// `.<name>.<pid>.<random>.tmp` beside `path`: hidden (node_exporter reads `*.prom`
/// only, nginx `*.conf`), on the same filesystem for the rename, and unique, so that two
/// writers never write into one file.
fn aside_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
    path.with_file_name(format!(
        ".{name}.{}.{:08x}.tmp",
        std::process::id(),
        rand::random::<u32>()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_whole_file_with_the_mode_asked_for_and_leaves_nothing_aside() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        let p = d.join("sub/key.pem");
        write(&p, b"first", Some(0o600)).unwrap();
        write(&p, b"second", Some(0o600)).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"second");
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        write(&p, b"third", Some(0o644)).unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        let names: Vec<_> = std::fs::read_dir(d.join("sub"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["key.pem"]);
    }

    #[test]
    fn a_failed_write_keeps_the_old_file_and_leaves_nothing_aside() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        let p = d.join("state.json");
        write(&p, b"old", None).unwrap();
        // A directory where the file should go: the rename fails.
        let blocked = d.join("blocked");
        std::fs::create_dir(&blocked).unwrap();
        std::fs::write(blocked.join("inside"), b"x").unwrap();
        assert!(write(&blocked, b"new", None).is_err());
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
        let mut names: Vec<_> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["blocked", "state.json"]);
    }
}
