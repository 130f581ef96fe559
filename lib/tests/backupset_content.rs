//! Volume content manifests: scan a real tree, compare a restored copy.

use std::fs;
use std::path::Path;

use pimops::backupset::{compare, mismatch_error, sampled, ContentManifest, Mismatch};

/// 3,000 files in 30 directories, sizes 0..~4 KiB, plus a symlink.
fn tree(root: &Path) {
    for i in 0..3000 {
        let dir = root.join(format!("assets/{:02}", i % 30));
        fs::create_dir_all(&dir).unwrap();
        fs::write(
            dir.join(format!("img{i:04}.jpg")),
            vec![(i % 251) as u8; (i * 7) % 4096],
        )
        .unwrap();
    }
    std::os::unix::fs::symlink("assets/00/img0000.jpg", root.join("logo.jpg")).unwrap();
}

fn copy_tree(from: &Path, to: &Path) {
    for e in walkdir::WalkDir::new(from) {
        let e = e.unwrap();
        let dest = to.join(e.path().strip_prefix(from).unwrap());
        if e.file_type().is_dir() {
            fs::create_dir_all(&dest).unwrap();
        } else if e.file_type().is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(e.path()).unwrap(), &dest).unwrap();
        } else {
            fs::copy(e.path(), &dest).unwrap();
        }
    }
}

#[test]
fn scan_records_every_file_sorted_with_totals() {
    let src = tempfile::tempdir().unwrap();
    tree(src.path());
    let m = ContentManifest::scan(src.path()).unwrap();
    assert_eq!(m.files, 3000);
    assert_eq!(m.entries.len(), 3001);
    let expected_bytes: u64 = (0..3000u64).map(|i| (i * 7) % 4096).sum();
    assert_eq!(m.bytes, expected_bytes);
    assert!(
        m.entries.windows(2).all(|w| w[0].path < w[1].path),
        "sorted by path"
    );
    let logo = m.entries.iter().find(|e| e.path == "logo.jpg").unwrap();
    assert_eq!(logo.link.as_deref(), Some("assets/00/img0000.jpg"));
    assert_eq!(logo.sha256, None);
    let one = m
        .entries
        .iter()
        .find(|e| e.path == "assets/01/img0001.jpg")
        .unwrap();
    assert_eq!(one.size, 7);
    use sha2::Digest;
    let want = hex::encode(sha2::Sha256::digest([1u8; 7]));
    assert_eq!(one.sha256.as_deref(), Some(want.as_str()));

    let back = ContentManifest::from_jsonl(&m.to_jsonl()).unwrap();
    assert_eq!(back, m);
    assert_eq!(m.to_jsonl().lines().count(), 3001);
}

#[test]
fn an_identical_copy_has_no_mismatches() {
    let src = tempfile::tempdir().unwrap();
    tree(src.path());
    let m = ContentManifest::scan(src.path()).unwrap();
    let copy = tempfile::tempdir().unwrap();
    copy_tree(src.path(), copy.path());
    assert_eq!(compare(&m, copy.path(), 100.0).unwrap(), vec![]);
}

#[test]
fn compare_names_missing_extra_and_changed_files() {
    let src = tempfile::tempdir().unwrap();
    tree(src.path());
    let m = ContentManifest::scan(src.path()).unwrap();
    let copy = tempfile::tempdir().unwrap();
    copy_tree(src.path(), copy.path());

    fs::remove_file(copy.path().join("assets/05/img0005.jpg")).unwrap();
    fs::write(copy.path().join("assets/extra.txt"), "new").unwrap();
    // Same size, one byte different: only the hash can tell.
    let p = copy.path().join("assets/10/img0100.jpg");
    let mut bytes = fs::read(&p).unwrap();
    bytes[3] ^= 1;
    fs::write(&p, bytes).unwrap();
    fs::write(copy.path().join("assets/11/img0101.jpg"), "short").unwrap();
    fs::remove_file(copy.path().join("logo.jpg")).unwrap();
    std::os::unix::fs::symlink("elsewhere.jpg", copy.path().join("logo.jpg")).unwrap();

    let found = compare(&m, copy.path(), 100.0).unwrap();
    let shown: Vec<String> = found.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        vec![
            "missing: assets/05/img0005.jpg",
            "changed: assets/10/img0100.jpg (sha256 differs)",
            "changed: assets/11/img0101.jpg (5 bytes, expected 707)",
            "extra: assets/extra.txt",
            "changed: logo.jpg (link to elsewhere.jpg, expected assets/00/img0000.jpg)",
        ]
    );
    let e = mismatch_error("assets", &found).unwrap();
    assert!(
        e.message().contains("missing: assets/05/img0005.jpg"),
        "{e}"
    );
    assert!(mismatch_error("assets", &[]).is_none());
}

#[test]
fn sampling_is_deterministic_and_still_catches_missing_files() {
    let src = tempfile::tempdir().unwrap();
    tree(src.path());
    let m = ContentManifest::scan(src.path()).unwrap();
    let copy = tempfile::tempdir().unwrap();
    copy_tree(src.path(), copy.path());

    let in_sample: Vec<&str> = m
        .entries
        .iter()
        .filter(|e| e.link.is_none() && sampled(&e.path, 10.0))
        .map(|e| e.path.as_str())
        .collect();
    assert!(
        (200..400).contains(&in_sample.len()),
        "about 10%: {}",
        in_sample.len()
    );
    let again: Vec<&str> = m
        .entries
        .iter()
        .filter(|e| e.link.is_none() && sampled(&e.path, 10.0))
        .map(|e| e.path.as_str())
        .collect();
    assert_eq!(in_sample, again);

    let out_of_sample = m
        .entries
        .iter()
        .find(|e| e.size > 0 && e.link.is_none() && !sampled(&e.path, 10.0))
        .unwrap();
    let inside = m
        .entries
        .iter()
        .find(|e| e.size > 0 && e.link.is_none() && sampled(&e.path, 10.0))
        .unwrap();
    for e in [out_of_sample, inside] {
        let p = copy.path().join(&e.path);
        let mut bytes = fs::read(&p).unwrap();
        bytes[0] ^= 0xff;
        fs::write(&p, bytes).unwrap();
    }
    fs::remove_file(copy.path().join("assets/07/img0007.jpg")).unwrap();

    let found = compare(&m, copy.path(), 10.0).unwrap();
    assert!(
        found.contains(&Mismatch::Missing("assets/07/img0007.jpg".into())),
        "{found:?}"
    );
    assert!(found.iter().any(|x| x.path() == inside.path), "{found:?}");
    assert!(
        !found.iter().any(|x| x.path() == out_of_sample.path),
        "{found:?}"
    );
    assert_eq!(found.len(), 2, "{found:?}");

    let all = compare(&m, copy.path(), 100.0).unwrap();
    assert_eq!(all.len(), 3, "{all:?}");
    assert!(sampled("x", 100.0) && !sampled("x", 0.0));
}
