//! A std-only HTTP/1.1 stub server on `127.0.0.1:0` for tests (in the spirit of cargo's test
//! support): routes by method and path answer with a fixed [`Reply`], a scripted sequence
//! (429 with `Retry-After`, then 200), or a closure (for API emulators). Every request is
//! recorded for assertions. One thread per connection, so many slow requests are served
//! concurrently; keep-alive is honoured and `Connection: close` closes after the answer.
//!
//! ```no_run
//! use pimops_test_support::http_stub::{HttpStub, Reply};
//! let stub = HttpStub::start();
//! stub.route("GET", "/health", Reply::status(200).body("ok").delay(100));
//! stub.route_seq("POST", "/p", vec![Reply::status(429).header("Retry-After", "1"), Reply::status(200)]);
//! stub.route("GET", "/api/*", Reply::status(200).json(&serde_json::json!({"ok": true})));
//! // ... point the code under test at stub.url() ...
//! assert_eq!(stub.count("POST", "/p"), 2);
//! ```
//!
//! Path patterns match the path without the query string: `"/x"` exactly, `"/api/*"` as a
//! prefix (`/api/` and anything below). An exact route beats a prefix route, a longer
//! prefix beats a shorter one, and among equals the route registered last wins, so a test
//! can override an earlier answer. Method `"*"` matches any method. Unmatched requests get
//! 404.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// One canned answer.
#[derive(Debug, Clone)]
pub struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    delay: Duration,
    hang_up: bool,
}

impl Reply {
    /// An answer with this status code and an empty body.
    pub fn status(code: u16) -> Reply {
        Reply {
            status: code,
            headers: Vec::new(),
            body: Vec::new(),
            delay: Duration::ZERO,
            hang_up: false,
        }
    }

    /// `200 OK` with an empty body.
    pub fn ok() -> Reply {
        Reply::status(200)
    }

    /// Close the connection without answering (after the delay, if any): the client sees
    /// a connection reset / unexpected EOF after its request was sent.
    pub fn hang_up() -> Reply {
        Reply {
            hang_up: true,
            ..Reply::status(0)
        }
    }

    /// Add a response header (Content-Length is always set by the server).
    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Reply {
        self.body = body.into();
        self
    }

    /// A JSON body with `Content-Type: application/json`.
    pub fn json(self, value: &serde_json::Value) -> Reply {
        self.header("Content-Type", "application/json")
            .body(value.to_string())
    }

    /// Sleep this many milliseconds before answering (latency injection).
    pub fn delay(self, ms: u64) -> Reply {
        self.delay_for(Duration::from_millis(ms))
    }

    pub fn delay_for(mut self, d: Duration) -> Reply {
        self.delay = d;
        self
    }
}

/// A request as the stub received it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// Path and query, as sent: `/v1/me?x=1`.
    pub target: String,
    /// Header names as sent; look them up with [`Request::header`].
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// The path without the query string.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    /// The query string without `?`, if any.
    pub fn query(&self) -> Option<&str> {
        self.target.split_once('?').map(|(_, q)| q)
    }

    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON; panics with the body if it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "request body of {} {} is not JSON ({e}): {}",
                self.method,
                self.target,
                self.body_str()
            )
        })
    }
}

type Handler = Arc<dyn Fn(&Request) -> Reply + Send + Sync>;

enum Responder {
    Fixed(Reply),
    /// Answers in order; the last one repeats once the script is used up.
    Seq(Vec<Reply>, usize),
    Func(Handler),
}

enum Pattern {
    Exact(String),
    Prefix(String),
}

impl Pattern {
    fn parse(p: &str) -> Pattern {
        match p.strip_suffix('*') {
            Some(prefix) => Pattern::Prefix(prefix.to_string()),
            None => Pattern::Exact(p.to_string()),
        }
    }

    /// How well it matches: None, or a rank where higher wins.
    fn rank(&self, path: &str) -> Option<usize> {
        match self {
            Pattern::Exact(p) if p == path => Some(usize::MAX),
            Pattern::Prefix(p) if path.starts_with(p.as_str()) => Some(p.len()),
            _ => None,
        }
    }
}

struct Route {
    method: String,
    pattern: Pattern,
    responder: Responder,
}

#[derive(Default)]
struct State {
    routes: Vec<Route>,
    requests: Vec<Request>,
}

/// The stub server. Stops accepting when dropped.
pub struct HttpStub {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // A panicking handler closure must not wedge every later request and assertion.
    state.lock().unwrap_or_else(|p| p.into_inner())
}

impl HttpStub {
    /// Start on a free port of 127.0.0.1.
    pub fn start() -> HttpStub {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the HTTP stub");
        let addr = listener.local_addr().expect("HTTP stub address");
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let acceptor = {
            let state = state.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("http-stub-accept".into())
                .spawn(move || accept_loop(listener, state, stop))
                .expect("spawning the HTTP stub")
        };
        HttpStub {
            addr,
            state,
            stop,
            acceptor: Some(acceptor),
        }
    }

    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `url()` followed by `path`.
    pub fn url_for(&self, path: &str) -> String {
        format!("{}{path}", self.url())
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Always answer `method path` with `reply`.
    pub fn route(&self, method: &str, path: &str, reply: Reply) -> &Self {
        self.add(method, path, Responder::Fixed(reply))
    }

    /// Answer successive requests with `replies` in order; the last repeats afterwards.
    pub fn route_seq(&self, method: &str, path: &str, replies: Vec<Reply>) -> &Self {
        assert!(!replies.is_empty(), "route_seq needs at least one reply");
        self.add(method, path, Responder::Seq(replies, 0))
    }

    /// Compute the answer from the request (for emulators). The closure runs with the
    /// stub's state unlocked, so it may block or keep its own state.
    pub fn route_fn(
        &self,
        method: &str,
        path: &str,
        f: impl Fn(&Request) -> Reply + Send + Sync + 'static,
    ) -> &Self {
        self.add(method, path, Responder::Func(Arc::new(f)))
    }

    fn add(&self, method: &str, path: &str, responder: Responder) -> &Self {
        lock(&self.state).routes.push(Route {
            method: method.to_ascii_uppercase(),
            pattern: Pattern::parse(path),
            responder,
        });
        self
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<Request> {
        lock(&self.state).requests.clone()
    }

    /// Requests received for `method path` (same pattern rules as routes).
    pub fn requests_to(&self, method: &str, path: &str) -> Vec<Request> {
        let pattern = Pattern::parse(path);
        lock(&self.state)
            .requests
            .iter()
            .filter(|r| method_matches(method, &r.method) && pattern.rank(r.path()).is_some())
            .cloned()
            .collect()
    }

    /// How many requests `method path` received.
    pub fn count(&self, method: &str, path: &str) -> usize {
        self.requests_to(method, path).len()
    }

    /// Forget the recorded requests (routes stay).
    pub fn clear_requests(&self) {
        lock(&self.state).requests.clear();
    }
}

impl Drop for HttpStub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept so the loop sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(h) = self.acceptor.take() {
            let _ = h.join();
        }
    }
}

fn method_matches(pattern: &str, method: &str) -> bool {
    pattern == "*" || pattern.eq_ignore_ascii_case(method)
}

fn accept_loop(listener: TcpListener, state: Arc<Mutex<State>>, stop: Arc<AtomicBool>) {
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(conn) = conn else { continue };
        let state = state.clone();
        let stop = stop.clone();
        let _ = std::thread::Builder::new()
            .name("http-stub-conn".into())
            .spawn(move || serve_connection(conn, &state, &stop));
    }
}

/// Serve requests on one connection until the client closes, asks to close, or idles.
fn serve_connection(conn: TcpStream, state: &Mutex<State>, stop: &AtomicBool) {
    // An idle keep-alive connection must not keep a thread forever.
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let _ = conn.set_nodelay(true);
    let Ok(mut writer) = conn.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(conn);
    while !stop.load(Ordering::SeqCst) {
        let req = match read_request(&mut reader) {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(msg) => {
                let _ = write_reply(&mut writer, &Reply::status(400).body(msg), true, true);
                return;
            }
        };
        let close = wants_close(&req);
        let reply = respond(state, &req);
        if !reply.delay.is_zero() {
            std::thread::sleep(reply.delay);
        }
        if reply.hang_up {
            let _ = writer.shutdown(std::net::Shutdown::Both);
            return;
        }
        // A HEAD answer announces the body's length but carries none.
        let with_body = !req.method.eq_ignore_ascii_case("HEAD");
        if write_reply(&mut writer, &reply, close, with_body).is_err() || close {
            return;
        }
    }
}

fn wants_close(req: &Request) -> bool {
    req.header("Connection")
        .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")))
}

/// Record the request and pick the answer.
fn respond(state: &Mutex<State>, req: &Request) -> Reply {
    let handler = {
        let mut st = lock(state);
        st.requests.push(req.clone());
        let path = req.path();
        let mut best: Option<(usize, usize)> = None;
        for (i, route) in st.routes.iter().enumerate() {
            if !method_matches(&route.method, &req.method) {
                continue;
            }
            if let Some(rank) = route.pattern.rank(path) {
                // `>=` so that a later route of equal rank wins.
                if best.is_none_or(|(r, _)| rank >= r) {
                    best = Some((rank, i));
                }
            }
        }
        let Some((_, i)) = best else {
            return Reply::status(404).body(format!("no stub route for {} {}", req.method, path));
        };
        match &mut st.routes[i].responder {
            Responder::Fixed(r) => return r.clone(),
            Responder::Seq(replies, next) => {
                let r = replies[(*next).min(replies.len() - 1)].clone();
                *next += 1;
                return r;
            }
            Responder::Func(f) => f.clone(),
        }
    };
    handler(req)
}

const MAX_HEAD: usize = 64 * 1024;

/// Read one request; `Ok(None)` when the client closed the connection between requests.
fn read_request(reader: &mut BufReader<TcpStream>) -> Result<Option<Request>, String> {
    let mut head = Vec::new();
    loop {
        let mut line = Vec::new();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) if head.is_empty() => return Ok(None),
            Ok(0) => return Err("connection closed inside the request head".into()),
            Ok(_) => {}
            Err(_) if head.is_empty() => return Ok(None),
            Err(e) => return Err(format!("reading the request head: {e}")),
        }
        // Tolerate blank lines before a request line (RFC 9112 §2.2).
        if head.is_empty() && (line == b"\r\n" || line == b"\n") {
            continue;
        }
        head.extend_from_slice(&line);
        if line == b"\r\n" || line == b"\n" {
            break;
        }
        if head.len() > MAX_HEAD {
            return Err("request head too large".into());
        }
    }
    let mut raw_headers = [httparse::EMPTY_HEADER; 128];
    let mut parsed = httparse::Request::new(&mut raw_headers);
    match parsed.parse(&head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err("incomplete request head".into()),
        Err(e) => return Err(format!("bad request head: {e}")),
    }
    let method = parsed.method.unwrap_or("").to_string();
    let target = parsed.path.unwrap_or("").to_string();
    let headers: Vec<(String, String)> = parsed
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_string(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    let mut req = Request {
        method,
        target,
        headers,
        body: Vec::new(),
    };
    if req
        .header("Expect")
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
    {
        let _ = reader.get_mut().write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
    }
    let chunked = req
        .header("Transfer-Encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        req.body = read_chunked(reader)?;
    } else if let Some(len) = req.header("Content-Length") {
        let len: usize = len
            .trim()
            .parse()
            .map_err(|_| format!("bad Content-Length {len:?}"))?;
        let mut body = vec![0; len];
        reader
            .read_exact(&mut body)
            .map_err(|e| format!("reading a {len}-byte body: {e}"))?;
        req.body = body;
    }
    Ok(Some(req))
}

fn read_chunked(reader: &mut BufReader<TcpStream>) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let mut size_line = String::new();
        reader
            .read_line(&mut size_line)
            .map_err(|e| format!("reading a chunk size: {e}"))?;
        let hex = size_line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(hex, 16).map_err(|_| format!("bad chunk size {hex:?}"))?;
        if size == 0 {
            // Trailers, up to the blank line.
            loop {
                let mut t = String::new();
                let n = reader
                    .read_line(&mut t)
                    .map_err(|e| format!("reading trailers: {e}"))?;
                if n == 0 || t == "\r\n" || t == "\n" {
                    return Ok(body);
                }
            }
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader
            .read_exact(&mut body[start..])
            .map_err(|e| format!("reading a chunk: {e}"))?;
        let mut crlf = String::new();
        reader
            .read_line(&mut crlf)
            .map_err(|e| format!("reading a chunk end: {e}"))?;
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        409 => "Conflict",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

fn write_reply(
    w: &mut TcpStream,
    reply: &Reply,
    close: bool,
    with_body: bool,
) -> std::io::Result<()> {
    let mut out = format!("HTTP/1.1 {} {}\r\n", reply.status, reason(reply.status));
    for (k, v) in &reply.headers {
        if k.eq_ignore_ascii_case("content-length") {
            continue;
        }
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str(&format!("Content-Length: {}\r\n", reply.body.len()));
    if close {
        out.push_str("Connection: close\r\n");
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    if with_body {
        bytes.extend_from_slice(&reply.body);
    }
    w.write_all(&bytes)?;
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// One request on a fresh connection with `Connection: close`; returns (status, body).
    fn fetch(stub: &HttpStub, method: &str, target: &str, body: &str) -> (u16, String) {
        let mut s = TcpStream::connect(stub.addr()).expect("connect");
        let req = format!(
            "{method} {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).expect("send");
        let mut resp = String::new();
        s.read_to_string(&mut resp).expect("read");
        let status = resp
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = resp.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
        (status, body.to_string())
    }

    #[test]
    fn routes_exact_prefix_default_and_records() {
        let stub = HttpStub::start();
        stub.route("GET", "/x", Reply::ok().body("exact"));
        stub.route("GET", "/api/*", Reply::status(201).body("prefix"));
        stub.route("*", "/any", Reply::status(202));
        assert_eq!(fetch(&stub, "GET", "/x?q=1", ""), (200, "exact".into()));
        assert_eq!(
            fetch(&stub, "GET", "/api/v1/me", ""),
            (201, "prefix".into())
        );
        assert_eq!(fetch(&stub, "DELETE", "/any", "").0, 202);
        assert_eq!(fetch(&stub, "POST", "/x", "").0, 404);
        fetch(&stub, "POST", "/api/echo", "{\"a\":1}");
        let reqs = stub.requests();
        assert_eq!(reqs.len(), 5);
        assert_eq!(reqs[0].target, "/x?q=1");
        assert_eq!(reqs[0].path(), "/x");
        assert_eq!(reqs[0].query(), Some("q=1"));
        assert_eq!(reqs[0].header("host"), Some("x"));
        assert_eq!(reqs[4].json()["a"], 1);
        assert_eq!(stub.count("POST", "/api/*"), 1);
        assert_eq!(stub.count("*", "/x"), 2);
    }

    #[test]
    fn later_route_overrides_and_sequence_repeats_last() {
        let stub = HttpStub::start();
        stub.route("GET", "/r", Reply::status(500));
        stub.route("GET", "/r", Reply::status(200));
        assert_eq!(fetch(&stub, "GET", "/r", "").0, 200);
        stub.route_seq(
            "POST",
            "/p",
            vec![
                Reply::status(429).header("Retry-After", "1"),
                Reply::status(500),
                Reply::ok(),
            ],
        );
        let codes: Vec<u16> = (0..4).map(|_| fetch(&stub, "POST", "/p", "").0).collect();
        assert_eq!(codes, [429, 500, 200, 200]);
    }

    #[test]
    fn route_fn_sees_the_request() {
        let stub = HttpStub::start();
        stub.route_fn("POST", "/echo", |r| Reply::ok().body(r.body.clone()));
        assert_eq!(
            fetch(&stub, "POST", "/echo", "hello"),
            (200, "hello".into())
        );
    }

    #[test]
    fn keep_alive_serves_several_requests_on_one_connection() {
        let stub = HttpStub::start();
        stub.route("GET", "/k", Reply::ok().body("abc"));
        stub.route("HEAD", "/k", Reply::ok().body("abc"));
        let mut s = TcpStream::connect(stub.addr()).expect("connect");
        s.write_all(b"HEAD /k HTTP/1.1\r\nHost: x\r\n\r\nGET /k HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .expect("send");
        let mut resp = String::new();
        s.read_to_string(&mut resp).expect("read");
        assert_eq!(resp.matches("HTTP/1.1 200 OK").count(), 2, "{resp}");
        assert!(resp.ends_with("\r\n\r\nabc"), "{resp}");
        assert_eq!(stub.count("*", "/k"), 2);
    }

    #[test]
    fn chunked_request_bodies_are_decoded() {
        let stub = HttpStub::start();
        stub.route("POST", "/c", Reply::ok());
        let mut s = TcpStream::connect(stub.addr()).expect("connect");
        s.write_all(b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
            .expect("send");
        let mut resp = String::new();
        s.read_to_string(&mut resp).expect("read");
        assert_eq!(stub.requests()[0].body_str(), "abcde");
    }

    #[test]
    fn serves_many_slow_requests_concurrently() {
        let stub = Arc::new(HttpStub::start());
        stub.route("GET", "/slow", Reply::ok().body("ok").delay(100));
        let start = Instant::now();
        let clients: Vec<_> = (0..200)
            .map(|_| {
                let stub = stub.clone();
                std::thread::spawn(move || fetch(&stub, "GET", "/slow", "").0)
            })
            .collect();
        for c in clients {
            assert_eq!(c.join().expect("client"), 200);
        }
        // Serially this would take 20 s.
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(stub.count("GET", "/slow"), 200);
    }

    #[test]
    fn hang_up_closes_without_an_answer_and_drop_stops() {
        let stub = HttpStub::start();
        stub.route("GET", "/h", Reply::hang_up());
        assert_eq!(fetch(&stub, "GET", "/h", ""), (0, String::new()));
        let addr = stub.addr();
        drop(stub);
        assert!(TcpStream::connect(addr).is_err());
    }
}
