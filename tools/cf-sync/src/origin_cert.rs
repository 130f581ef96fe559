//! `origin-cert`: the origin's certificate for the env's `domain` and `*.domain` from
//! Cloudflare's Origin CA, as the two files of the Swarm secret the stack's Traefik serves.
//!
//! The private key and the CSR are made here; only the CSR (which holds the public key)
//! is sent. The key is written with mode 0600 and never printed or logged. Both files are
//! written through temp files and renames, the key first: a run cut short between the two
//! renames leaves a key that does not match the certificate, which the next run sees and
//! repairs by issuing again.
//!
//! Idempotent: a certificate already in the directory, for the same hostnames and key
//! type, matching its key and valid for more than [`RENEW_WITHIN_DAYS`] days, is kept
//! without any API call (so no token is needed then).

use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

use pimops::cloudflare::{Client, OriginCertRequest};
use pimops::error::io_reason;
use pimops::inventory::Inventory;
use pimops::output::{Output, Record};
use pimops::{Error, Result};
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};
use x509_parser::extensions::GeneralName;

use crate::args::{OriginCertArgs, OriginKeyType};

/// A certificate with this many days left or fewer is renewed.
pub const RENEW_WITHIN_DAYS: i64 = 30;

/// The certificate (PEM) in `--out`.
pub const CERT_FILE: &str = "origin.crt";
/// The private key (PKCS#8 PEM, mode 0600) in `--out`.
pub const KEY_FILE: &str = "origin.key";

const OID_EC: &str = "1.2.840.10045.2.1";
const OID_RSA: &str = "1.2.840.113549.1.1.1";

impl OriginKeyType {
    fn request_type(self) -> &'static str {
        match self {
            OriginKeyType::Ecc => "origin-ecc",
            OriginKeyType::Rsa => "origin-rsa",
        }
    }

    fn key_oid(self) -> &'static str {
        match self {
            OriginKeyType::Ecc => OID_EC,
            OriginKeyType::Rsa => OID_RSA,
        }
    }
}

/// What a certificate file says, as far as renewal is concerned.
#[derive(Debug)]
struct CertInfo {
    hostnames: Vec<String>,
    not_after: i64,
    key_oid: String,
    spki: Vec<u8>,
}

pub fn run(inv: &Inventory, a: &OriginCertArgs, out: &mut Output) -> Result<()> {
    let env = inv.env(&a.env)?;
    let domain = env.domain.as_deref().ok_or_else(|| {
        Error::config(format!(
            "{}: env.{}.domain: missing: origin-cert makes the certificate for the env's domain",
            inv.file(),
            env.name
        ))
    })?;
    let hostnames = vec![domain.to_string(), format!("*.{domain}")];
    let cert_path = a.out.join(CERT_FILE);
    let key_path = a.out.join(KEY_FILE);
    let now = chrono::Utc::now().timestamp();

    let renewing = match existing(&cert_path, &key_path) {
        Ok(None) => false,
        Ok(Some(info)) => match why_renew(&info, &hostnames, a.key_type, now) {
            None => {
                let rec = record(
                    &env.name, "kept", &hostnames, &cert_path, &key_path, &info, now,
                );
                return out.emit(&rec, human);
            }
            Some(why) => {
                log::info!("{}: {why}: issuing a new certificate", cert_path.display());
                true
            }
        },
        Err(why) => {
            log::warn!("{}: {why}: issuing a new certificate", cert_path.display());
            true
        }
    };

    let client = Client::from_env(&inv.cloudflare().api)?;
    let key = new_key(a.key_type)?;
    let csr = csr(&key, domain, &hostnames)?;
    let issued = client.create_origin_cert(&OriginCertRequest {
        csr,
        hostnames: hostnames.clone(),
        request_type: a.key_type.request_type().to_string(),
        requested_validity: a.validity,
    })?;
    let info = parse_cert(&issued.certificate)
        .map_err(|why| Error::failed(format!("cloudflare: POST /certificates: {why}")))?;
    if info.spki != key.public_key_der() {
        return Err(Error::failed(
            "cloudflare: POST /certificates: the certificate is not for the key of the CSR sent",
        ));
    }
    if let Some(missing) = hostnames.iter().find(|h| !info.hostnames.contains(h)) {
        return Err(Error::failed(format!(
            "cloudflare: POST /certificates: the certificate does not cover {missing}"
        )));
    }
    prepare_dir(&a.out)?;
    write_atomic(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
    write_atomic(&cert_path, issued.certificate.as_bytes(), 0o644)?;
    let action = if renewing { "renewed" } else { "issued" };
    let rec = record(
        &env.name, action, &hostnames, &cert_path, &key_path, &info, now,
    )
    .with("id", issued.id.as_str())
    .with("expires_on", issued.expires_on.as_str());
    out.emit(&rec, human)
}

/// Why the certificate in the directory must be replaced, if it must.
fn why_renew(
    info: &CertInfo,
    hostnames: &[String],
    key_type: OriginKeyType,
    now: i64,
) -> Option<String> {
    let mut have = info.hostnames.clone();
    let mut want = hostnames.to_vec();
    have.sort();
    want.sort();
    if have != want {
        return Some(format!(
            "it is for {}, not {}",
            info.hostnames.join(", "),
            hostnames.join(", ")
        ));
    }
    if info.key_oid != key_type.key_oid() {
        return Some(format!(
            "its key is not of the type {} asks for",
            key_type.request_type()
        ));
    }
    let days = days_left(info, now);
    if days <= RENEW_WITHIN_DAYS {
        return Some(format!(
            "it expires in {days} day(s) (renewed within {RENEW_WITHIN_DAYS})"
        ));
    }
    None
}

fn days_left(info: &CertInfo, now: i64) -> i64 {
    (info.not_after - now).div_euclid(86_400)
}

/// The certificate in the directory, `None` when there is none; an error (a reason to
/// issue again) when it or its key is unreadable or they do not belong together.
fn existing(cert: &Path, key: &Path) -> std::result::Result<Option<CertInfo>, String> {
    let pem = match std::fs::read_to_string(cert) {
        Ok(p) => p,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read: {}", io_reason(&e))),
    };
    let info = parse_cert(&pem)?;
    let key_pem = std::fs::read_to_string(key)
        .map_err(|e| format!("{}: cannot read: {}", key.display(), io_reason(&e)))?;
    // The key's contents never go into a message: only whether it parses and matches.
    let pair = KeyPair::from_pem(&key_pem)
        .map_err(|_| format!("{}: not a PKCS#8 private key", key.display()))?;
    if pair.public_key_der() != info.spki {
        return Err(format!("{} does not match the certificate", key.display()));
    }
    Ok(Some(info))
}

fn parse_cert(pem: &str) -> std::result::Result<CertInfo, String> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|e| format!("not a PEM certificate: {e}"))?;
    let cert = pem
        .parse_x509()
        .map_err(|e| format!("not an X.509 certificate: {e}"))?;
    let mut hostnames = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::DNSName(n) = name {
                hostnames.push(n.to_ascii_lowercase());
            }
        }
    }
    let spki = cert.public_key();
    Ok(CertInfo {
        hostnames,
        not_after: cert.validity().not_after.timestamp(),
        key_oid: spki.algorithm.algorithm.to_id_string(),
        spki: spki.raw.to_vec(),
    })
}

fn new_key(key_type: OriginKeyType) -> Result<KeyPair> {
    let failed = |e: String| Error::failed(format!("generating the private key: {e}"));
    match key_type {
        OriginKeyType::Ecc => {
            KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| failed(e.to_string()))
        }
        OriginKeyType::Rsa => {
            use rsa::pkcs8::{EncodePrivateKey, LineEnding};
            // ring (under rcgen) signs with RSA keys but cannot make them.
            let key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048)
                .map_err(|e| failed(e.to_string()))?;
            let pem = key
                .to_pkcs8_pem(LineEnding::LF)
                .map_err(|e| failed(e.to_string()))?;
            KeyPair::from_pkcs8_pem_and_sign_algo(&pem, &rcgen::PKCS_RSA_SHA256)
                .map_err(|e| failed(e.to_string()))
        }
    }
}

fn csr(key: &KeyPair, domain: &str, hostnames: &[String]) -> Result<String> {
    let failed = |e: rcgen::Error| Error::failed(format!("making the CSR: {e}"));
    let mut params = CertificateParams::new(hostnames.to_vec()).map_err(failed)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, domain);
    params.distinguished_name = dn;
    params
        .serialize_request(key)
        .map_err(failed)?
        .pem()
        .map_err(failed)
}

fn prepare_dir(dir: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| {
            Error::failed(format!(
                "{}: cannot create: {}",
                dir.display(),
                io_reason(&e)
            ))
        })
}

/// Write through a temp file created with `mode` (so a key is never readable by others,
/// not even for a moment) and a rename.
fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let fail = |e: std::io::Error| {
        Error::failed(format!(
            "{}: cannot write: {}",
            path.display(),
            io_reason(&e)
        ))
    };
    pimops::atomic_file::write(path, bytes, Some(mode)).map_err(fail)
}

fn record(
    env: &str,
    action: &str,
    hostnames: &[String],
    cert: &Path,
    key: &Path,
    info: &CertInfo,
    now: i64,
) -> Record {
    let not_after = chrono::DateTime::from_timestamp(info.not_after, 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default();
    Record::new("origin-cert")
        .with("env", env)
        .with("action", action)
        .with("hostnames", hostnames.to_vec())
        .with("cert", cert.display().to_string())
        .with("key", key.display().to_string())
        .with("not_after", not_after)
        .with("days_left", days_left(info, now))
}

fn human(r: &Record) -> String {
    let s = |k: &str| r.get(k).and_then(|v| v.as_str()).unwrap_or_default();
    let hosts: Vec<&str> = r
        .get("hostnames")
        .and_then(|v| v.as_array())
        .map(|a| a.iter().filter_map(|h| h.as_str()).collect())
        .unwrap_or_default();
    format!(
        "{} {}: {} (valid until {}, {} days), key {}",
        s("action"),
        hosts.join(" "),
        s("cert"),
        s("not_after"),
        r.get("days_left").and_then(|v| v.as_i64()).unwrap_or(0),
        s("key")
    )
}
