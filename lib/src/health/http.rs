//! The HTTP(S) probe, on a plain `TcpStream` and rustls rather than an HTTP client library:
//! a health check must control where it connects (`resolve` keeps Host and SNI while
//! dialling the origin's IP), see the certificate chain even when verification succeeds,
//! time each phase, and never follow a redirect or retry unless told to.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};

use rustls::pki_types::ServerName;
use rustls::{ClientConnection, StreamOwned};

use super::net::{self, Clock};
use super::{tls, CheckSpec, ProbeContext, Status, Verdict};

/// Bodies are read up to this much; checks run on what was read.
const BODY_CAP: usize = 1 << 20;
const HEAD_CAP: usize = 64 << 10;
const MAX_REDIRECTS: usize = 10;
const USER_AGENT: &str = concat!("pimops-healthcheck/", env!("CARGO_PKG_VERSION"));

/// An absolute http(s) URL, as much of one as a probe needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Url {
    pub https: bool,
    /// Without brackets for IPv6.
    pub host: String,
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl Url {
    pub(crate) fn parse(s: &str) -> Result<Url, String> {
        let (https, rest) = if let Some(r) = s.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = s.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(format!("{s:?} is not an http:// or https:// URL"));
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        if authority.contains('@') {
            return Err(format!("{s:?}: credentials in URLs are not supported"));
        }
        let default_port = if https { 443 } else { 80 };
        let (host, port) = if authority.starts_with('[') || authority.matches(':').count() == 1 {
            if authority.ends_with(']') {
                (
                    authority
                        .trim_start_matches('[')
                        .trim_end_matches(']')
                        .to_string(),
                    default_port,
                )
            } else {
                net::split_host_port(authority).map_err(|_| format!("{s:?}: bad host or port"))?
            }
        } else {
            (authority.to_string(), default_port)
        };
        if host.is_empty() || host.contains([' ', '/', '[', ']']) {
            return Err(format!("{s:?}: bad host"));
        }
        let tail = tail.split('#').next().unwrap_or("");
        let path = if tail.starts_with('/') {
            tail.to_string()
        } else {
            format!("/{tail}")
        };
        Ok(Url {
            https,
            host: host.to_ascii_lowercase(),
            port,
            path,
        })
    }

    /// Resolve a `Location` header against this URL.
    pub(crate) fn join(&self, location: &str) -> Result<Url, String> {
        let loc = location.trim();
        if loc.starts_with("http://") || loc.starts_with("https://") {
            return Url::parse(loc);
        }
        if let Some(rest) = loc.strip_prefix("//") {
            return Url::parse(&format!("{}://{rest}", self.scheme()));
        }
        let path = if loc.starts_with('/') {
            loc.to_string()
        } else {
            let path_only = self.path.split('?').next().unwrap_or("/");
            let dir = &path_only[..path_only.rfind('/').map(|i| i + 1).unwrap_or(1)];
            format!("{dir}{loc}")
        };
        Url::parse(&format!("{}://{}{path}", self.scheme(), self.host_port()))
    }

    fn scheme(&self) -> &'static str {
        if self.https {
            "https"
        } else {
            "http"
        }
    }

    /// The Host header: the port only when it is not the scheme's default.
    fn host_port(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == if self.https { 443 } else { 80 } {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}{}", self.scheme(), self.host_port(), self.path)
    }
}

enum Conn {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Conn {
    fn socket(&self) -> &TcpStream {
        match self {
            Conn::Plain(s) => s,
            Conn::Tls(s) => s.get_ref(),
        }
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf),
            Conn::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls(s) => s.flush(),
        }
    }
}

/// Buffered reading within the check's budget.
struct Reader<'a> {
    conn: &'a mut Conn,
    clock: &'a Clock,
    buf: Vec<u8>,
    pos: usize,
}

impl Reader<'_> {
    /// Read more; `Ok(false)` at end of stream.
    fn fill(&mut self, phase: &str) -> Result<bool, String> {
        let left = self.clock.remaining(phase)?;
        self.conn
            .socket()
            .set_read_timeout(Some(left))
            .map_err(|e| format!("socket: {e}"))?;
        let mut chunk = [0u8; 16 << 10];
        match self.conn.read(&mut chunk) {
            Ok(0) => Ok(false),
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(true)
            }
            Err(e) if net::is_timeout(&e) => Err(self.clock.timed_out(phase)),
            // A TLS peer that closes without close_notify: the framing checks below
            // still notice a body cut short.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
            Err(e) => Err(format!("reading the response failed: {e}")),
        }
    }

    fn available(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    fn line(&mut self) -> Result<String, String> {
        loop {
            if let Some(i) = self.available().windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.available()[..i]).into_owned();
                self.pos += i + 2;
                return Ok(line);
            }
            if self.available().len() > 4096 {
                return Err("malformed chunked body: chunk header too long".into());
            }
            if !self.fill("reading the body")? {
                return Err("connection closed in the middle of a chunked body".into());
            }
        }
    }

    /// Append up to `n` bytes to `out` (never past the cap); false when the stream ended first.
    fn take(&mut self, n: usize, out: &mut Vec<u8>) -> Result<bool, String> {
        let mut need = n;
        while need > 0 {
            if self.available().is_empty() {
                self.buf.clear();
                self.pos = 0;
                if !self.fill("reading the body")? {
                    return Ok(false);
                }
            }
            let k = need.min(self.available().len());
            let room = BODY_CAP.saturating_sub(out.len()).min(k);
            out.extend_from_slice(&self.available()[..room]);
            self.pos += k;
            need -= k;
        }
        Ok(true)
    }
}

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Everything one request/response needs to know.
struct Exchange<'a> {
    spec: &'a CheckSpec,
    ctx: &'a ProbeContext,
    clock: &'a Clock,
    metrics: &'a mut BTreeMap<String, f64>,
}

impl Exchange<'_> {
    fn run(
        &mut self,
        url: &Url,
        method: &str,
        connect_ip: Option<IpAddr>,
    ) -> Result<Response, Fail> {
        let addrs = match connect_ip {
            Some(ip) => vec![SocketAddr::new(ip, url.port)],
            None => net::resolve(&url.host, url.port, self.clock)?,
        };
        let before = self.clock.elapsed_ms();
        let tcp = net::connect(&addrs, self.clock)?;
        self.metrics
            .insert("connect_ms".into(), self.clock.elapsed_ms() - before);
        let mut conn = if url.https {
            Conn::Tls(Box::new(self.handshake(url, tcp)?))
        } else {
            Conn::Plain(tcp)
        };
        let request = self.request(url, method);
        let left = self.clock.remaining("sending the request")?;
        conn.socket()
            .set_write_timeout(Some(left))
            .map_err(|e| format!("socket: {e}"))?;
        conn.write_all(request.as_bytes())
            .and_then(|()| conn.flush())
            .map_err(|e| {
                if net::is_timeout(&e) {
                    self.clock.timed_out("sending the request")
                } else {
                    format!("sending the request failed: {e}")
                }
            })?;
        Ok(read_response(&mut conn, self.clock, method)?)
    }

    fn handshake(
        &mut self,
        url: &Url,
        tcp: TcpStream,
    ) -> Result<StreamOwned<ClientConnection, TcpStream>, Fail> {
        let verify = self.spec.tls_verify.unwrap_or(true);
        let (config, recorder) =
            tls::client_config(verify, self.ctx.ca_file.as_deref()).map_err(Fail::Config)?;
        let name = ServerName::try_from(url.host.clone())
            .map_err(|e| format!("{:?} is not a valid TLS server name: {e}", url.host))?;
        let mut conn =
            ClientConnection::new(config, name).map_err(|e| format!("TLS setup failed: {e}"))?;
        let mut tcp = tcp;
        let left = self.clock.remaining("in the TLS handshake")?;
        for set in [TcpStream::set_read_timeout, TcpStream::set_write_timeout] {
            set(&tcp, Some(left)).map_err(|e| format!("socket: {e}"))?;
        }
        let before = self.clock.elapsed_ms();
        let mut outcome = Ok(());
        while conn.is_handshaking() {
            if let Err(e) = conn.complete_io(&mut tcp) {
                outcome = Err(e);
                break;
            }
        }
        // Recorded even when the handshake failed: an expired chain should still say when.
        if let Some(expiry) = recorder.earliest_expiry() {
            let earliest = self
                .metrics
                .get("ssl_earliest_cert_expiry")
                .map_or(expiry as f64, |e| e.min(expiry as f64));
            self.metrics
                .insert("ssl_earliest_cert_expiry".into(), earliest);
        }
        match outcome {
            Ok(()) => {
                self.metrics
                    .insert("tls_ms".into(), self.clock.elapsed_ms() - before);
                Ok(StreamOwned::new(conn, tcp))
            }
            Err(e) if net::is_timeout(&e) => {
                Err(self.clock.timed_out("in the TLS handshake").into())
            }
            Err(e) => Err(format!("TLS handshake with {} failed: {e}", url.host).into()),
        }
    }

    fn request(&self, url: &Url, method: &str) -> String {
        let has = |name: &str| {
            self.spec
                .headers
                .keys()
                .any(|k| k.eq_ignore_ascii_case(name))
        };
        let mut req = format!("{method} {} HTTP/1.1\r\n", url.path);
        if !has("host") {
            req.push_str(&format!("Host: {}\r\n", url.host_port()));
        }
        if !has("user-agent") {
            req.push_str(&format!("User-Agent: {USER_AGENT}\r\n"));
        }
        if !has("accept") {
            req.push_str("Accept: */*\r\n");
        }
        for (k, v) in &self.spec.headers {
            if !k.eq_ignore_ascii_case("connection") {
                // Header values from the inventory cannot smuggle extra lines.
                let v: String = v.chars().filter(|c| *c != '\r' && *c != '\n').collect();
                req.push_str(&format!("{k}: {v}\r\n"));
            }
        }
        req.push_str("Connection: close\r\n\r\n");
        req
    }
}

/// Why an exchange failed: the target (CRITICAL) or our own configuration, such as an
/// unreadable CA file (UNKNOWN).
enum Fail {
    Target(String),
    Config(String),
}

impl From<String> for Fail {
    fn from(s: String) -> Fail {
        Fail::Target(s)
    }
}

fn read_response(conn: &mut Conn, clock: &Clock, method: &str) -> Result<Response, String> {
    let mut r = Reader {
        conn,
        clock,
        buf: Vec::new(),
        pos: 0,
    };
    let (status, headers) = loop {
        let mut slots = [httparse::EMPTY_HEADER; 96];
        let mut parsed = httparse::Response::new(&mut slots);
        match parsed.parse(r.available()) {
            Ok(httparse::Status::Complete(n)) => {
                let status = parsed.code.unwrap_or(0);
                let headers: Vec<(String, String)> = parsed
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_string(),
                            String::from_utf8_lossy(h.value).trim().to_string(),
                        )
                    })
                    .collect();
                r.pos += n;
                // Interim responses (100 Continue, 103 Early Hints) precede the real one.
                if (100..200).contains(&status) && status != 101 {
                    continue;
                }
                break (status, headers);
            }
            Ok(httparse::Status::Partial) => {
                if r.available().len() > HEAD_CAP {
                    return Err("response headers larger than 64 KiB".into());
                }
                if !r.fill("waiting for the response")? {
                    return Err(if r.available().is_empty() {
                        "connection closed without a response".into()
                    } else {
                        "connection closed in the middle of the response headers".into()
                    });
                }
            }
            Err(e) => return Err(format!("malformed HTTP response: {e}")),
        }
    };
    let mut resp = Response {
        status,
        headers,
        body: Vec::new(),
    };
    if method == "HEAD" || status == 204 || status == 304 {
        return Ok(resp);
    }
    let chunked = resp
        .header("transfer-encoding")
        .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"));
    if chunked {
        loop {
            let line = r.line()?;
            let size_text = line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_text, 16)
                .map_err(|_| format!("malformed chunked body: bad chunk size {size_text:?}"))?;
            if size == 0 || resp.body.len() >= BODY_CAP {
                break;
            }
            if !r.take(size, &mut resp.body)? {
                return Err("connection closed in the middle of a chunked body".into());
            }
            r.line()?;
        }
    } else if let Some(len) = resp.header("content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| format!("malformed Content-Length {len:?}"))?;
        let mut got = Vec::new();
        if !r.take(len.min(BODY_CAP), &mut got)? {
            return Err(format!(
                "connection closed after {} of {len} body bytes",
                got.len()
            ));
        }
        resp.body = got;
    } else {
        resp.body.extend_from_slice(r.available());
        while resp.body.len() < BODY_CAP {
            r.buf.clear();
            r.pos = 0;
            if !r.fill("reading the body")? {
                break;
            }
            resp.body.extend_from_slice(r.available());
        }
        resp.body.truncate(BODY_CAP);
    }
    Ok(resp)
}

fn is_redirect(status: u16) -> bool {
    matches!(status, 301 | 302 | 303 | 307 | 308)
}

pub(super) fn probe(spec: &CheckSpec, ctx: &ProbeContext) -> Verdict {
    let clock = Clock::new(ctx.timeout);
    let raw_url = spec.url.as_deref().unwrap_or("");
    let first = match Url::parse(raw_url) {
        Ok(u) => u,
        Err(e) => return Verdict::unknown(e),
    };
    let resolve_ip = match spec.resolve.as_deref().map(str::parse::<IpAddr>) {
        None => None,
        Some(Ok(ip)) => Some(ip),
        Some(Err(_)) => return Verdict::unknown("resolve: expected an IP address"),
    };
    let mut method = spec.method.as_deref().unwrap_or("GET").to_ascii_uppercase();
    let follow = spec.follow_redirects.unwrap_or(false);
    let mut metrics = BTreeMap::new();
    let mut url = first.clone();
    let mut visited = vec![url.to_string()];
    let outcome = loop {
        // `resolve` pins the URL's own host; a redirect elsewhere is resolved normally.
        let ip = resolve_ip.filter(|_| url.host == first.host);
        let mut exchange = Exchange {
            spec,
            ctx,
            clock: &clock,
            metrics: &mut metrics,
        };
        let resp = match exchange.run(&url, &method, ip) {
            Ok(resp) => resp,
            Err(e) => break Err(e),
        };
        let location = resp.header("location").map(str::to_string);
        match location {
            Some(loc) if follow && is_redirect(resp.status) => {
                let next = match url.join(&loc) {
                    Ok(n) => n,
                    Err(e) => {
                        break Err(
                            format!("HTTP {} redirects to a bad Location: {e}", resp.status).into(),
                        )
                    }
                };
                let shown = next.to_string();
                if visited.contains(&shown) {
                    visited.push(shown);
                    break Err(format!("redirect loop: {}", visited.join(" → ")).into());
                }
                if visited.len() > MAX_REDIRECTS {
                    break Err(format!(
                        "too many redirects (more than {MAX_REDIRECTS}), last to {shown}"
                    )
                    .into());
                }
                visited.push(shown);
                if resp.status == 303 || (matches!(resp.status, 301 | 302) && method == "POST") {
                    method = "GET".into();
                }
                url = next;
            }
            _ => break Ok(resp),
        }
    };
    let total_ms = clock.elapsed_ms();
    metrics.insert("response_ms".into(), total_ms);
    let mut v = match outcome {
        Err(Fail::Config(e)) => Verdict::unknown(e),
        Err(Fail::Target(e)) => Verdict::critical(e),
        Ok(resp) => judge(spec, &resp, total_ms),
    };
    judge_cert(spec, &mut v, &metrics);
    v.metrics.extend(metrics);
    v
}

/// Status, body and timing of the final response.
fn judge(spec: &CheckSpec, resp: &Response, total_ms: f64) -> Verdict {
    let mut v = Verdict::ok(format!("HTTP {} in {total_ms:.0} ms", resp.status))
        .metric("http_status_code", resp.status as f64);
    let status_ok = if spec.expect_status.is_empty() {
        (200..300).contains(&resp.status)
    } else {
        spec.expect_status.contains(&resp.status)
    };
    if !status_ok {
        let expected = if spec.expect_status.is_empty() {
            "200-299".to_string()
        } else {
            spec.expect_status
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut msg = format!("status {} (expected {expected})", resp.status);
        if let Some(loc) = resp.header("location").filter(|_| is_redirect(resp.status)) {
            msg.push_str(&format!(", redirect to {loc}"));
        }
        v.add(Status::Critical, msg);
    }
    let body = String::from_utf8_lossy(&resp.body);
    if let Some(needle) = &spec.body_contains {
        if !body.contains(needle.as_str()) {
            v.add(
                Status::Critical,
                format!("body does not contain {needle:?}"),
            );
        }
    }
    if let Some(re) = &spec.body_regex {
        match regex::Regex::new(re) {
            Ok(re) if re.is_match(&body) => {}
            Ok(re) => v.add(Status::Critical, format!("body does not match /{re}/")),
            Err(e) => v.add(Status::Unknown, format!("body_regex is invalid: {e}")),
        }
    }
    if !spec.json.is_empty() {
        match serde_json::from_slice::<serde_json::Value>(&resp.body) {
            Err(e) => v.add(Status::Critical, format!("body is not JSON: {e}")),
            Ok(doc) => {
                for (pointer, expected) in &spec.json {
                    match doc.pointer(pointer) {
                        None => v.add(
                            Status::Critical,
                            format!("JSON {pointer} is missing (expected {expected})"),
                        ),
                        Some(actual) if json_equal(actual, expected) => {}
                        Some(actual) => v.add(
                            Status::Critical,
                            format!("JSON {pointer} is {actual}, expected {expected}"),
                        ),
                    }
                }
            }
        }
    }
    v.judge_time(spec, "response", total_ms);
    v
}

/// JSON equality where `1` and `1.0` are the same number, as a person reading them would say.
fn json_equal(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) if a.is_number() && b.is_number() => x == y,
        _ => a == b,
    }
}

/// Certificate days left against `cert_warn_days` / `cert_min_days`; expired is CRITICAL.
fn judge_cert(spec: &CheckSpec, v: &mut Verdict, metrics: &BTreeMap<String, f64>) {
    let Some(&expiry) = metrics.get("ssl_earliest_cert_expiry") else {
        return;
    };
    let now = chrono::Utc::now().timestamp() as f64;
    let days = ((expiry - now) / 86_400.0).floor();
    v.metrics.insert("cert_days_left".into(), days);
    if v.status == Status::Critical && v.summary.is_empty() {
        // The exchange failed; its message says why, the metrics keep the expiry.
        return;
    }
    let text = if expiry < now {
        format!("certificate expired {} days ago", -days)
    } else {
        format!("certificate expires in {days} days")
    };
    if expiry < now {
        v.add(Status::Critical, text);
    } else if let Some(min) = spec.cert_min_days.filter(|m| days < *m as f64) {
        v.add(Status::Critical, format!("{text} (minimum {min})"));
    } else if let Some(warn) = spec.cert_warn_days.filter(|w| days < *w as f64) {
        v.add(Status::Warning, format!("{text} (warning below {warn})"));
    } else {
        v.summary.push_str(&format!(", {text}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = Url::parse("https://Origin.Test:8443/a/b?x=1#frag").unwrap();
        assert_eq!(
            (u.https, u.host.as_str(), u.port, u.path.as_str()),
            (true, "origin.test", 8443, "/a/b?x=1")
        );
        assert_eq!(u.to_string(), "https://origin.test:8443/a/b?x=1");
        assert_eq!(Url::parse("http://h").unwrap().to_string(), "http://h/");
        assert_eq!(Url::parse("http://[::1]:81/").unwrap().host, "::1");
        assert_eq!(Url::parse("https://[::1]/").unwrap().port, 443);
        for bad in ["ftp://x/", "https://u:p@h/", "http://:80/", "http://h:x/"] {
            assert!(Url::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn redirect_targets() {
        let u = Url::parse("http://h:8080/a/b?q").unwrap();
        assert_eq!(u.join("/c").unwrap().to_string(), "http://h:8080/c");
        assert_eq!(u.join("c?d").unwrap().to_string(), "http://h:8080/a/c?d");
        assert_eq!(u.join("//other/x").unwrap().to_string(), "http://other/x");
        assert_eq!(u.join("https://s/").unwrap().to_string(), "https://s/");
    }

    #[test]
    fn json_numbers_compare_by_value() {
        assert!(json_equal(&serde_json::json!(1), &serde_json::json!(1.0)));
        assert!(!json_equal(&serde_json::json!("1"), &serde_json::json!(1)));
    }
}
