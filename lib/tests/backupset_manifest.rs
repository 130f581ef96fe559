//! Backup-set manifests: JSON round trip, and stored in a real restic repository on S3.

use pimops::backupset::{
    read_content_manifest, read_manifest, read_manifest_direct, read_set_direct,
    write_content_manifest, write_manifest, BinlogPosition, ContentManifest, DatabaseInfo,
    DbMethod, Manifest, SetId, SetSelector, SnapshotKind, SnapshotRef, TableInfo, VolumeInfo,
    MANIFEST_VERSION,
};
use pimops::restic::{Restic, ResticOptions, SnapshotFilter};
use pimops::secrets::Secret;
use pimops::ErrorKind;
use pimops_test_support::require_program;
use pimops_test_support::s3::S3Server;

fn sample(set: SetId) -> Manifest {
    let mut m = Manifest::new(set, "prod", "pim-prod");
    m.finished = Some(m.created + chrono::Duration::seconds(42));
    m.snapshots.push(SnapshotRef {
        kind: SnapshotKind::Db,
        name: "mariabackup".into(),
        snapshot_id: "a".repeat(64),
        bytes: 1 << 30,
        bytes_added: 1 << 20,
        path: "/mariabackup.xb".into(),
    });
    m.database = Some(DatabaseInfo {
        method: DbMethod::Physical,
        server_version: "10.11.6-MariaDB".into(),
        binlog: Some(BinlogPosition {
            file: "mysql-bin.000042".into(),
            position: 1234,
            gtid: Some("0-1-99".into()),
        }),
        tables: vec![TableInfo {
            schema: "pimcore".into(),
            name: "objects".into(),
            rows: 10_000,
            engine: "InnoDB".into(),
            checksum: Some(3_770_035_346),
        }],
        counts_at: Some(BinlogPosition {
            file: "mysql-bin.000043".into(),
            position: 4,
            gtid: None,
        }),
    });
    m.volumes.push(VolumeInfo {
        name: "assets".into(),
        path: "/var/lib/docker/volumes/pim_assets/_data".into(),
        files: 3000,
        bytes: 123_456,
        content_manifest_snapshot: "b".repeat(64),
    });
    m
}

#[test]
fn set_ids_sort_by_time_and_parse_strictly() {
    let t1 = chrono::DateTime::parse_from_rfc3339("2026-12-04T14:15:00Z")
        .unwrap()
        .to_utc();
    let t2 = t1 + chrono::Duration::seconds(1);
    let a = SetId::at(t1);
    let b = SetId::at(t2);
    assert!(a < b);
    assert!(a.as_str().starts_with("20261204T141500Z-"), "{a}");
    assert_eq!(a.as_str().len(), 23);
    assert_eq!(a.tag(), format!("set:{a}"));
    assert_eq!(a.time(), Some(t1));
    assert_eq!(a.as_str().parse::<SetId>().unwrap(), a);
    for bad in [
        "",
        "latest",
        "20261204T141500Z",
        "20261204T141500Z-xyz123",
        "2026-12-04-abcdef",
        "20261340T141500Z-abcdef",
    ] {
        let e = bad.parse::<SetId>().expect_err(bad);
        assert_eq!(e.kind(), ErrorKind::Usage);
    }
    assert_eq!(
        "latest".parse::<SetSelector>().unwrap(),
        SetSelector::Latest
    );
    assert_eq!(
        a.as_str().parse::<SetSelector>().unwrap(),
        SetSelector::Id(a)
    );
}

#[test]
fn manifest_json_round_trips() {
    let m = sample(SetId::new());
    let json = m.to_json();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["version"], MANIFEST_VERSION);
    assert_eq!(v["snapshots"][0]["kind"], "db");
    assert_eq!(v["database"]["method"], "physical");
    assert_eq!(v["database"]["binlog"]["position"], 1234);
    assert_eq!(Manifest::from_json(&json).unwrap(), m);

    let newer = json.replace(
        &format!("\"version\": {MANIFEST_VERSION}"),
        "\"version\": 99",
    );
    let e = Manifest::from_json(&newer).expect_err("newer format");
    assert_eq!(e.kind(), ErrorKind::Data);
    let broken = json.replace("\"rows\": 10000", "\"rows\": \"many\"");
    let e = Manifest::from_json(&broken).expect_err("bad rows");
    assert!(e.message().contains("database.tables[0].rows"), "{e}");
}

#[test]
fn manifests_and_content_manifests_are_stored_in_the_set() {
    require_program("restic");
    let s3 = S3Server::start();
    let cache = tempfile::tempdir().unwrap();
    let r = Restic::new(
        &s3.repository("prod"),
        ResticOptions::new()
            .password(Secret::new("pw-of-the-test".into()))
            .aws_credentials(
                Secret::new(s3.access_key().into()),
                Secret::new(s3.secret_key().into()),
            )
            .cache_dir(cache.path()),
    )
    .unwrap();
    r.init().unwrap();

    let e = read_manifest(&r, &SetSelector::Latest, None).expect_err("no sets yet");
    assert!(e.message().contains("no complete backup set"), "{e}");

    let t = chrono::Utc::now();
    let older = sample(SetId::at(t - chrono::Duration::hours(1)));
    let newer = sample(SetId::at(t));
    write_manifest(&r, &newer, &[]).unwrap();
    write_manifest(&r, &older, &[]).unwrap();

    assert_eq!(
        read_manifest(&r, &SetSelector::Latest, None).unwrap(),
        newer
    );
    assert_eq!(
        read_manifest(&r, &SetSelector::Id(older.set_id.clone()), Some("pim-prod")).unwrap(),
        older
    );
    let e = read_manifest(&r, &SetSelector::Latest, Some("other-host")).expect_err("other host");
    assert_eq!(e.kind(), ErrorKind::Failed);

    let tagged = r
        .snapshots(
            &SnapshotFilter::default()
                .tag(newer.set_id.tag())
                .tag("manifest"),
        )
        .unwrap();
    assert_eq!(tagged.len(), 1);
    assert_eq!(tagged[0].paths, vec!["/manifest.json".to_string()]);

    let dir = tempfile::tempdir().unwrap();
    for i in 0..50 {
        std::fs::write(dir.path().join(format!("f{i}")), format!("{i}")).unwrap();
    }
    let content = ContentManifest::scan(dir.path()).unwrap();
    let s = write_content_manifest(&r, &newer.set_id, "pim-prod", "assets", &content).unwrap();
    assert_eq!(
        read_content_manifest(&r, &s.snapshot_id, "assets").unwrap(),
        content
    );
    let e = write_content_manifest(&r, &newer.set_id, "pim-prod", "../x", &content)
        .expect_err("bad name");
    assert_eq!(e.kind(), ErrorKind::Config);

    // Version 2: the content manifests ride in the manifest's snapshot. Readers of the
    // manifest alone get it; readers of the set get both.
    let empty = ContentManifest::scan(tempfile::tempdir().unwrap().path()).unwrap();
    let mut newest = sample(SetId::at(t + chrono::Duration::hours(1)));
    for v in &mut newest.volumes {
        v.content_manifest_snapshot = String::new();
    }
    write_manifest(&r, &newest, &[("assets", &content), ("empty", &empty)]).unwrap();
    assert_eq!(
        read_manifest(&r, &SetSelector::Latest, None).unwrap(),
        newest
    );
    assert_eq!(
        read_manifest_direct(&r, &SetSelector::Latest, None).unwrap(),
        newest
    );
    let (m, contents) = read_set_direct(&r, &SetSelector::Latest, Some("pim-prod")).unwrap();
    assert_eq!(m, newest);
    assert_eq!(contents.len(), 2);
    assert_eq!(contents["assets"], content);
    assert_eq!(contents["empty"].files, 0);
    // A version 1 set has none after its manifest.
    let (m, contents) = read_set_direct(&r, &SetSelector::Id(newer.set_id.clone()), None).unwrap();
    assert_eq!((m, contents.len()), (newer, 0));
}
