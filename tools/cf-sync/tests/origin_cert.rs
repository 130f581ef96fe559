//! `origin-cert` against the emulator's Origin CA, through the built binary: the files it
//! writes, the certificate in them, idempotence, renewal, and the key staying local.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::{Fixture, ENV_PROD};
use pimops_test_support::command::{Outcome, TestCommand};
use x509_parser::extensions::GeneralName;

const HOSTS: [&str; 2] = ["*.pim.example.com", "pim.example.com"];

struct Cert {
    hostnames: Vec<String>,
    not_after: i64,
    issuer: String,
    key_oid: String,
    spki: Vec<u8>,
}

fn parse(pem: &str) -> Cert {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).expect("a PEM certificate");
    let cert = pem.parse_x509().expect("an X.509 certificate");
    let mut hostnames: Vec<String> = cert
        .subject_alternative_name()
        .expect("SAN readable")
        .expect("a SAN extension")
        .value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::DNSName(d) => Some(d.to_string()),
            _ => None,
        })
        .collect();
    hostnames.sort();
    Cert {
        hostnames,
        not_after: cert.validity().not_after.timestamp(),
        issuer: cert.issuer().to_string(),
        key_oid: cert.public_key().algorithm.algorithm.to_id_string(),
        spki: cert.public_key().raw.to_vec(),
    }
}

fn days_from_now(t: i64) -> i64 {
    (t - chrono::Utc::now().timestamp()) / 86_400
}

struct Files {
    cert: PathBuf,
    key: PathBuf,
}

fn files(dir: &Path) -> Files {
    Files {
        cert: dir.join("origin.crt"),
        key: dir.join("origin.key"),
    }
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// `cf-sync --config … ARGS` with no token in the environment.
fn without_token(f: &Fixture, args: &[&str]) -> Outcome {
    TestCommand::new(env!("CARGO_BIN_EXE_cf-sync"))
        .arg("--config")
        .arg(&f.config)
        .args(args)
        .run()
}

/// The one origin-cert record of a run.
fn result(out: &Outcome) -> serde_json::Value {
    let recs = out.records_of("origin-cert");
    assert_eq!(recs.len(), 1, "{out}");
    recs[0].clone()
}

/// Neither the key nor any part of it left the machine or reached the output.
fn assert_key_stayed_local(f: &Fixture, key_pem: &str, out: &Outcome) {
    let body: String = key_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let chunk = &body[..40];
    for r in f.cf.requests() {
        let sent = String::from_utf8_lossy(&r.body);
        assert!(
            !sent.contains("PRIVATE KEY") && !sent.contains(chunk),
            "the key was sent"
        );
    }
    for text in [&out.stdout, &out.stderr] {
        assert!(
            !text.contains("PRIVATE KEY") && !text.contains(chunk),
            "the key was printed\n{out}"
        );
    }
}

#[test]
fn first_run_writes_the_certificate_and_a_private_key_only_we_can_read() {
    let f = Fixture::new("", ENV_PROD);
    let dir = f.dir.join("secrets/origin");
    let out_dir = dir.to_str().unwrap();
    let out = f.run(
        &["origin-cert", "--env", "prod", "--out", out_dir, "--json"],
        0,
    );
    let rec = result(&out);
    assert_eq!(rec["action"], "issued");
    assert_eq!(
        rec["hostnames"],
        serde_json::json!(["pim.example.com", "*.pim.example.com"])
    );

    let p = files(&dir);
    let key_mode = std::fs::metadata(&p.key).unwrap().permissions().mode() & 0o777;
    assert_eq!(key_mode, 0o600, "the key is private");
    let cert = parse(&read(&p.cert));
    assert_eq!(cert.hostnames, HOSTS);
    assert!(cert.issuer.contains("CloudFlare"), "{}", cert.issuer);
    let days = days_from_now(cert.not_after);
    assert!((5474..=5475).contains(&days), "{days} days");
    assert!(rec["days_left"]
        .as_i64()
        .is_some_and(|d| d.abs_diff(days) <= 1));
    assert_eq!(cert.key_oid, "1.2.840.10045.2.1", "ECDSA by default");
    // The key written is the certificate's.
    let key_pem = read(&p.key);
    let key = rcgen::KeyPair::from_pem(&key_pem).expect("a PKCS#8 key");
    assert_eq!(key.public_key_der(), cert.spki);
    // What the Origin CA was asked for.
    let issued = f.cf.origin_certs();
    assert_eq!(issued.len(), 1);
    assert_eq!(issued[0].request_type, "origin-ecc");
    assert_eq!(issued[0].requested_validity, 5475);
    assert_eq!(
        issued[0].hostnames,
        ["pim.example.com", "*.pim.example.com"]
    );
    assert_eq!(rec["id"], issued[0].id.as_str());
    assert_eq!(f.cf.count("POST", "/certificates"), 1);
    assert_key_stayed_local(&f, &key_pem, &out);
    // No temp files left behind.
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

#[test]
fn a_valid_certificate_is_kept_without_any_api_call() {
    let f = Fixture::new("", ENV_PROD);
    let dir = f.dir.join("origin");
    let args = [
        "origin-cert",
        "--env",
        "prod",
        "--out",
        dir.to_str().unwrap(),
    ];
    f.run(&args, 0);
    let p = files(&dir);
    let (cert, key) = (read(&p.cert), read(&p.key));
    f.cf.clear_requests();

    // Not even a token is needed to find that nothing is to do.
    let out = without_token(&f, &[&args[..], &["--json"]].concat());
    out.assert_code(0);
    assert_eq!(result(&out)["action"], "kept");
    assert!(
        f.cf.requests().is_empty(),
        "no API call: {:?}",
        f.cf.requests()
    );
    assert_eq!(
        (read(&p.cert), read(&p.key)),
        (cert, key),
        "files untouched"
    );
    // Neither run printed the key.
    assert_key_stayed_local(&f, &read(&p.key), &out);
    assert_eq!(f.cf.origin_certs().len(), 1);
}

#[test]
fn a_certificate_expiring_within_30_days_or_for_other_names_is_renewed() {
    let f = Fixture::new("", ENV_PROD);
    let dir = f.dir.join("origin");
    let args = [
        "origin-cert",
        "--env",
        "prod",
        "--out",
        dir.to_str().unwrap(),
        "--json",
    ];
    let p = files(&dir);

    // A 7-day certificate is due at once.
    let first = f.run(&[&args[..], &["--validity", "7"]].concat(), 0);
    assert_eq!(result(&first)["action"], "issued");
    assert!((6..=7).contains(&days_from_now(parse(&read(&p.cert)).not_after)));
    let old_key = read(&p.key);
    let again = f.run(&args, 0);
    assert_eq!(result(&again)["action"], "renewed", "{again}");
    assert!(
        again.stderr.contains("day(s) (renewed within 30)"),
        "{again}"
    );
    assert!(days_from_now(parse(&read(&p.cert)).not_after) > 5000);
    assert_ne!(read(&p.key), old_key, "a new key with each certificate");
    assert_eq!(f.cf.origin_certs().len(), 2);

    // A certificate made elsewhere, with 20 days left, for the right names.
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(HOSTS.map(String::from).to_vec()).unwrap();
    let now = chrono::Utc::now();
    let soon = now + chrono::Duration::days(20);
    use chrono::Datelike;
    params.not_after = rcgen::date_time_ymd(soon.year(), soon.month() as u8, soon.day() as u8);
    let cert = params.self_signed(&key).unwrap();
    std::fs::write(&p.cert, cert.pem()).unwrap();
    std::fs::write(&p.key, key.serialize_pem()).unwrap();
    let renewed = f.run(&args, 0);
    assert_eq!(result(&renewed)["action"], "renewed", "{renewed}");
    assert_eq!(f.cf.origin_certs().len(), 3);

    // A valid certificate for another domain is replaced too.
    f.write_config("", &ENV_PROD.replace("pim.example.com", "shop.example.com"));
    let moved = f.run(&args, 0);
    assert_eq!(result(&moved)["action"], "renewed", "{moved}");
    assert_eq!(
        parse(&read(&p.cert)).hostnames,
        ["*.shop.example.com", "shop.example.com"]
    );

    // A key that does not match the certificate (a run cut short) is repaired.
    std::fs::write(&p.key, rcgen::KeyPair::generate().unwrap().serialize_pem()).unwrap();
    let repaired = f.run(&args, 0);
    assert_eq!(result(&repaired)["action"], "renewed", "{repaired}");
    let key = rcgen::KeyPair::from_pem(&read(&p.key)).unwrap();
    assert_eq!(key.public_key_der(), parse(&read(&p.cert)).spki);
    f.run(&args, 0);
    assert_eq!(f.cf.origin_certs().len(), 5, "kept once repaired");
}

#[test]
fn an_rsa_certificate_has_an_rsa_key_and_switching_types_renews() {
    let f = Fixture::new("", ENV_PROD);
    let dir = f.dir.join("origin");
    let args = [
        "origin-cert",
        "--env",
        "prod",
        "--out",
        dir.to_str().unwrap(),
        "--json",
    ];
    f.run(&args, 0);
    let out = f.run(
        &[&args[..], &["--key-type", "rsa", "--validity", "365"]].concat(),
        0,
    );
    assert_eq!(result(&out)["action"], "renewed", "{out}");
    let p = files(&dir);
    let cert = parse(&read(&p.cert));
    assert_eq!(cert.key_oid, "1.2.840.113549.1.1.1");
    assert!((364..=365).contains(&days_from_now(cert.not_after)));
    let issued = f.cf.origin_certs();
    assert_eq!(
        (
            issued[1].request_type.as_str(),
            issued[1].requested_validity
        ),
        ("origin-rsa", 365)
    );
    let key = rcgen::KeyPair::from_pem(&read(&p.key)).expect("a PKCS#8 RSA key");
    assert_eq!(key.public_key_der(), cert.spki);
}

#[test]
fn refusals_write_nothing() {
    let f = Fixture::new("", ENV_PROD);
    let dir = f.dir.join("origin");
    let args = [
        "origin-cert",
        "--env",
        "prod",
        "--out",
        dir.to_str().unwrap(),
    ];

    let bad = f
        .cmd(&args)
        .env("CLOUDFLARE_API_TOKEN", "wrong-token")
        .run();
    bad.assert_code(77);
    assert!(bad.stderr.contains("9109"), "{bad}");
    let missing = without_token(&f, &args);
    missing.assert_code(78);
    assert!(!dir.exists(), "nothing written");

    // The Origin CA's own validation: a domain outside the account's zones.
    f.write_config("", &ENV_PROD.replace("example.com", "other.org"));
    let outside = f.run(&args, 1);
    assert!(
        outside.stderr.contains("Cloudflare error 1010"),
        "{outside}"
    );
    assert!(!dir.exists());

    f.write_config("", &ENV_PROD.replace("domain = \"pim.example.com\"\n", ""));
    let no_domain = f.run(&args, 78);
    assert!(no_domain.stderr.contains("env.prod.domain"), "{no_domain}");

    let usage = f.run(&[&args[..], &["--validity", "100"]].concat(), 2);
    assert!(usage.stderr.contains("5475"), "{usage}");
    assert!(f.cf.origin_certs().is_empty());
}
