//! A volume snapshot restored and compared with the content manifest taken right before
//! its backup.

use std::path::{Path, PathBuf};

use std::borrow::Cow;

use pimops::backupset::{self, ContentManifest, Manifest, SnapshotKind, VolumeInfo};
use pimops::restic::Restic;
use pimops::{Error, Result};

/// The volume's snapshot id in the set.
pub fn snapshot_of<'m>(manifest: &'m Manifest, vol: &VolumeInfo) -> Result<&'m str> {
    manifest
        .snapshots_of(SnapshotKind::Volume)
        .find(|s| s.name == vol.name)
        .map(|s| s.snapshot_id.as_str())
        .ok_or_else(|| {
            Error::failed(format!(
                "set {} lists volume {} but no snapshot of it",
                manifest.set_id, vol.name
            ))
        })
}

/// `restic restore` of the volume below `target`; returns where the volume's root landed
/// (restic recreates the backed-up absolute path below the target).
pub fn restore(
    restic: &Restic,
    manifest: &Manifest,
    vol: &VolumeInfo,
    target: &Path,
) -> Result<PathBuf> {
    let snapshot = snapshot_of(manifest, vol)?;
    std::fs::create_dir_all(target)
        .map_err(|e| Error::io(format!("creating {}", target.display()), e))?;
    restic.restore(snapshot, target, None)?;
    Ok(target.join(vol.path.trim_start_matches('/')))
}

/// Restore into `target` and compare; `Ok` says what was verified, the error names every
/// file that differs.
/// `stored` is the content manifest stored with the set's manifest, if any.
pub fn verify(
    restic: &Restic,
    manifest: &Manifest,
    vol: &VolumeInfo,
    stored: Option<&ContentManifest>,
    target: &Path,
    sample_pct: f64,
) -> Result<(u64, String)> {
    // A content manifest in a snapshot of its own (manifest version 1) is read while the
    // files are restored: neither waits for the other's restic call.
    let (root, expected) = std::thread::scope(|s| {
        let expected = s.spawn(|| match (stored, vol.content_in_manifest()) {
            (Some(c), _) => Ok(Cow::Borrowed(c)),
            (None, true) => Err(Error::failed(format!(
                "the set's manifest holds no content manifest of volume {}",
                vol.name
            ))),
            (None, false) => {
                backupset::read_content_manifest(restic, &vol.content_manifest_snapshot, &vol.name)
                    .map(Cow::Owned)
            }
        });
        let t = std::time::Instant::now();
        let root = restore(restic, manifest, vol, target);
        log::debug!(
            "volume {}: restic restore took {:.2}s",
            vol.name,
            t.elapsed().as_secs_f64()
        );
        let expected = expected.join().unwrap_or_else(|_| {
            Err(Error::failed(
                "reading the content manifest: the worker panicked",
            ))
        });
        (root, expected)
    });
    let (root, expected) = (root?, expected?);
    if (expected.files, expected.bytes) != (vol.files, vol.bytes) {
        return Err(Error::failed(format!(
            "volume {}: the content manifest lists {} files, {} bytes; the set's manifest says {} files, {} bytes",
            vol.name, expected.files, expected.bytes, vol.files, vol.bytes
        )));
    }
    if !root.is_dir() {
        return Err(Error::failed(format!(
            "volume {}: the snapshot does not contain {}",
            vol.name, vol.path
        )));
    }
    let t = std::time::Instant::now();
    let mismatches = backupset::compare(&expected, &root, sample_pct)?;
    log::debug!(
        "volume {}: comparing took {:.2}s",
        vol.name,
        t.elapsed().as_secs_f64()
    );
    if let Some(e) = backupset::mismatch_error(&vol.name, &mismatches) {
        return Err(e);
    }
    let hashed = if sample_pct >= 100.0 {
        "sha256 of every file".to_string()
    } else {
        format!("sha256 of a {sample_pct}% sample")
    };
    Ok((
        expected.bytes,
        format!(
            "{} files, {} bytes match the content manifest (names, sizes, links, {hashed})",
            expected.files, expected.bytes
        ),
    ))
}
