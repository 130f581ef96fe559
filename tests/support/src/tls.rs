//! An HTTPS server on `127.0.0.1:<free port>` with a certificate chain made by the test:
//! a root CA (trusted only through [`TlsServer::ca_file`]), an intermediate CA, and a leaf
//! for `localhost`, `origin.test` and `127.0.0.1` expiring when the test says. Each
//! request is answered by the test's handler on its own thread and recorded with the SNI
//! name the client sent, so a test can assert what the probe really did.
//!
//! ```no_run
//! use pimops_test_support::tls::{Response, TlsServer};
//! let server = TlsServer::start(5, |_req| Response::new(200).body("ok"));
//! let url = server.url("origin.test", "/");  // https://origin.test:PORT/
//! // probe url with resolve = 127.0.0.1 and the CA from server.ca_file() ...
//! assert_eq!(server.requests()[0].sni.as_deref(), Some("origin.test"));
//! ```

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ServerConfig, ServerConnection, StreamOwned};

/// The host name besides `localhost` that the leaf certificate is valid for.
pub const TEST_HOST: &str = "origin.test";
const DAY: i64 = 86_400;

/// A request as the server received it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    /// The TLS server name indication the client sent, if any.
    pub sni: Option<String>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The handler's answer; sent with `Content-Length` and `Connection: close`.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn new(status: u16) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }
    pub fn header(mut self, name: &str, value: &str) -> Response {
        self.headers.push((name.into(), value.into()));
        self
    }
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Response {
        self.body = body.into();
        self
    }
}

type Handler = dyn Fn(&Request) -> Response + Send + Sync;

pub struct TlsServer {
    addr: SocketAddr,
    ca_pem: String,
    ca_file: PathBuf,
    leaf_not_after: i64,
    intermediate_not_after: i64,
    requests: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Validity from a day before `not_after` at the latest (expired certificates too) until it.
fn set_validity(params: &mut CertificateParams, not_after: i64) {
    let not_before = (now_unix() - DAY).min(not_after - DAY);
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    params.not_before = epoch + Duration::from_secs(not_before.max(0) as u64);
    params.not_after = epoch + Duration::from_secs(not_after.max(0) as u64);
}

fn ca_params(name: &str, not_after: i64) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    p.distinguished_name.push(DnType::CommonName, name);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut p, not_after);
    p
}

struct Chain {
    root: Certificate,
    intermediate: Certificate,
    leaf: Certificate,
    leaf_key: KeyPair,
}

fn make_chain(leaf_not_after: i64, intermediate_not_after: i64) -> Chain {
    let root_key = KeyPair::generate().expect("root key");
    let root = ca_params("pimops test root CA", now_unix() + 3650 * DAY)
        .self_signed(&root_key)
        .expect("root cert");
    let inter_key = KeyPair::generate().expect("intermediate key");
    let intermediate = ca_params("pimops test intermediate CA", intermediate_not_after)
        .signed_by(&inter_key, &root, &root_key)
        .expect("intermediate cert");
    let leaf_key = KeyPair::generate().expect("leaf key");
    let mut p = CertificateParams::new(vec!["localhost".to_string(), TEST_HOST.to_string()])
        .expect("leaf params");
    p.subject_alt_names
        .push(SanType::IpAddress([127, 0, 0, 1].into()));
    p.distinguished_name.push(DnType::CommonName, TEST_HOST);
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    set_validity(&mut p, leaf_not_after);
    let leaf = p
        .signed_by(&leaf_key, &intermediate, &inter_key)
        .expect("leaf cert");
    Chain {
        root,
        intermediate,
        leaf,
        leaf_key,
    }
}

impl TlsServer {
    /// Serve `handler` over HTTPS with a leaf certificate expiring in `days_valid` days and
    /// an hour (negative: already expired) under an intermediate valid for ten years.
    pub fn start(
        days_valid: i64,
        handler: impl Fn(&Request) -> Response + Send + Sync + 'static,
    ) -> TlsServer {
        TlsServer::start_with_chain(days_valid, 3650, handler)
    }

    /// As [`start`](Self::start), choosing the intermediate's expiry too (it may expire
    /// before the leaf: the earliest in the chain is what a probe must report).
    pub fn start_with_chain(
        leaf_days: i64,
        intermediate_days: i64,
        handler: impl Fn(&Request) -> Response + Send + Sync + 'static,
    ) -> TlsServer {
        // An hour past the whole days, so "days left" reads exactly the days asked for even
        // when the probe runs a second later.
        let base = now_unix() + 3600;
        let (leaf_not_after, intermediate_not_after) =
            (base + leaf_days * DAY, base + intermediate_days * DAY);
        let chain = make_chain(leaf_not_after, intermediate_not_after);
        let dir = tempfile::tempdir().expect("temp dir for the CA file");
        let ca_pem = chain.root.pem();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, &ca_pem).expect("writing the CA file");

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certs: Vec<CertificateDer<'static>> =
            vec![chain.leaf.der().clone(), chain.intermediate.der().clone()];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(chain.leaf_key.serialize_der()));
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("server certificate");
        let config = Arc::new(config);

        let listener = TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0");
        let addr = listener.local_addr().expect("listener address");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        let accept = {
            let (requests, stop) = (requests.clone(), stop.clone());
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(tcp) = conn else { continue };
                    let (config, requests, handler) =
                        (config.clone(), requests.clone(), handler.clone());
                    std::thread::spawn(move || serve(tcp, config, &requests, &*handler));
                }
            })
        };
        TlsServer {
            addr,
            ca_pem,
            ca_file,
            leaf_not_after,
            intermediate_not_after,
            requests,
            stop,
            accept: Some(accept),
            _dir: dir,
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https://<host>:<port><path>`; use [`TEST_HOST`] with `resolve = "127.0.0.1"`.
    pub fn url(&self, host: &str, path: &str) -> String {
        format!("https://{host}:{}{path}", self.port())
    }

    /// The root CA certificate (PEM) a verifying client must trust.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The same, as a file.
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    /// Unix time the leaf certificate expires.
    pub fn leaf_not_after(&self) -> i64 {
        self.leaf_not_after
    }

    /// Unix time the intermediate CA certificate expires.
    pub fn intermediate_not_after(&self) -> i64 {
        self.intermediate_not_after
    }

    /// Requests served so far, in arrival order (handshakes that failed are not requests).
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        301 => "Moved Permanently",
        302 => "Found",
        404 => "Not Found",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

fn serve(
    tcp: TcpStream,
    config: Arc<ServerConfig>,
    requests: &Mutex<Vec<Request>>,
    handler: &Handler,
) {
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(30)));
    let Ok(conn) = ServerConnection::new(config) else {
        return;
    };
    let mut tls = StreamOwned::new(conn, tcp);
    let mut buf = Vec::new();
    let request = loop {
        let mut chunk = [0u8; 4096];
        match tls.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        let mut slots = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut slots);
        match req.parse(&buf) {
            Ok(httparse::Status::Complete(_)) => {
                break Request {
                    method: req.method.unwrap_or("").to_string(),
                    path: req.path.unwrap_or("").to_string(),
                    headers: req
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_string(),
                                String::from_utf8_lossy(h.value).into_owned(),
                            )
                        })
                        .collect(),
                    sni: tls.conn.server_name().map(str::to_string),
                }
            }
            Ok(httparse::Status::Partial) => continue,
            Err(_) => return,
        }
    };
    if let Ok(mut r) = requests.lock() {
        r.push(request.clone());
    }
    let resp = handler(&request);
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        resp.status,
        reason(resp.status),
        resp.body.len()
    );
    for (k, v) in &resp.headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(&resp.body);
    let _ = tls.write_all(&bytes);
    tls.conn.send_close_notify();
    let _ = tls.flush();
}
