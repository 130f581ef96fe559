//! The emulator checks what the real API checks (through the library client).

use pimops::cloudflare::{Batch, Client, RecordId, CUSTOM_RULES_PHASE};
use pimops::secrets::Secret;
use pimops::ErrorKind;
use pimops_test_support::cloudflare_emulator::CloudflareEmulator;
use serde_json::json;

fn client(cf: &CloudflareEmulator) -> Client {
    Client::new(&cf.api_url(), Some(Secret::new("t".into())))
}

#[test]
fn a_batch_is_one_transaction_in_order_within_its_limit() {
    let cf = CloudflareEmulator::start("t");
    let zone = cf.add_zone("example.com");
    let old = cf.add_record(
        &zone,
        json!({"name": "a", "type": "A", "content": "192.0.2.1"}),
    );
    let c = client(&cf);

    // Delete then post at the same name in one batch: deletes run first.
    let mut b = Batch::default();
    b.deletes.push(RecordId {
        id: old["id"].as_str().unwrap().into(),
    });
    b.posts
        .push(json!({"name": "a", "type": "CNAME", "content": "x.example.net"}));
    let r = c.batch(&zone, &b).unwrap();
    assert_eq!(r.posts[0].name, "a.example.com");

    // A proxied TXT fails the whole batch, the first post included.
    let mut b = Batch::default();
    b.posts
        .push(json!({"name": "ok", "type": "A", "content": "192.0.2.2"}));
    b.posts
        .push(json!({"name": "t", "type": "TXT", "content": "x", "proxied": true}));
    let e = c.batch(&zone, &b).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Failed);
    assert!(e.message().contains("Cloudflare error 9004"), "{e}");
    assert_eq!(cf.records(&zone).len(), 1);

    cf.set_batch_limit(2);
    let mut b = Batch::default();
    for i in 0..3 {
        b.posts
            .push(json!({"name": format!("n{i}"), "type": "A", "content": "192.0.2.3"}));
    }
    let e = c.batch(&zone, &b).unwrap_err();
    assert!(e.message().contains("81060"), "{e}");
}

#[test]
fn entrypoint_is_404_until_created_and_put_versions_it() {
    let cf = CloudflareEmulator::start("t");
    let zone = cf.add_zone("example.com");
    let c = client(&cf);
    assert!(c.entrypoint(&zone, CUSTOM_RULES_PHASE).unwrap().is_none());
    let rule = json!({"description": "d", "expression": "true", "action": "block"});
    let rs = c
        .create_entrypoint(&zone, CUSTOM_RULES_PHASE, std::slice::from_ref(&rule))
        .unwrap();
    assert_eq!(rs.version, "1");
    let e = c
        .create_entrypoint(&zone, CUSTOM_RULES_PHASE, std::slice::from_ref(&rule))
        .unwrap_err();
    assert!(e.message().contains("20217"), "{e}");
    let rs = c
        .put_entrypoint(&zone, CUSTOM_RULES_PHASE, &[rule])
        .unwrap();
    assert_eq!(rs.version, "2");
    let bad = json!({"description": "d", "expression": "true", "action": "explode"});
    assert!(c.put_entrypoint(&zone, CUSTOM_RULES_PHASE, &[bad]).is_err());
}

#[test]
fn pages_follow_total_pages_and_unknown_zones_are_config_errors() {
    let cf = CloudflareEmulator::start("t");
    let zone = cf.add_zone("example.com");
    cf.add_records(
        &zone,
        12_345,
        |i| json!({"name": format!("h{i}"), "type": "A", "content": "192.0.2.1"}),
    );
    let c = client(&cf).with_records_per_page(5000);
    assert_eq!(c.dns_records(&zone).unwrap().len(), 12_345);
    assert_eq!(cf.count("GET", "/dns_records"), 3);
    cf.clear_requests();
    assert_eq!(client(&cf).dns_records(&zone).unwrap().len(), 12_345);
    assert_eq!(
        cf.count("GET", "/dns_records"),
        1,
        "the default page takes it all"
    );
    assert_eq!(c.zone("example.org").unwrap_err().kind(), ErrorKind::Config);
    let e = c
        .patch_setting(&zone, "ssl", &json!("sometimes"))
        .unwrap_err();
    assert!(e.message().contains("1007"), "{e}");
}
