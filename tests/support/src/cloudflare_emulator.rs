//! An emulator of the Cloudflare API v4 for tests, faithful to what cf-sync relies on
//! (see `reference/cloudflare.md`): the envelope, bearer-token auth, zone lookup by name,
//! DNS record CRUD with pagination and `result_info`, the batch endpoint (one transaction,
//! deletes → patches → puts → posts, a per-batch limit), the validation errors the real API
//! gives (proxying a TXT record, identical records, bad TTLs), the rulesets entrypoint of
//! `http_request_firewall_custom` (404 when none, PUT, POST), zone settings, `/ips` (no
//! auth), the Origin CA's `POST /certificates` (the CSR parsed and its signature checked,
//! hostnames in the account's zones, a certificate for them signed by the emulator's own
//! CA, valid from now for `requested_validity` days) and injectable faults (429 with
//! `Retry-After`, 5xx) for the next N requests.
//!
//! ```no_run
//! use pimops_test_support::cloudflare_emulator::CloudflareEmulator;
//! let cf = CloudflareEmulator::start("tok");
//! let zone = cf.add_zone("example.com");
//! // point [cloudflare] api at cf.api_url(), set CLOUDFLARE_API_TOKEN=tok ...
//! assert!(cf.records(&zone).is_empty());
//! ```

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{json, Map, Value};

use crate::http_stub::{HttpStub, Reply, Request};

/// The path prefix of the API, as in `https://api.cloudflare.com/client/v4`.
pub const API_PREFIX: &str = "/client/v4";

/// The phase cf-sync manages.
pub const CUSTOM_PHASE: &str = "http_request_firewall_custom";

const MAX_PER_PAGE: usize = 5_000_000;

/// Cloudflare's published ranges (as `/ips` served them when this was written).
pub const IPV4_CIDRS: &[&str] = &[
    "173.245.48.0/20",
    "103.21.244.0/22",
    "103.22.200.0/22",
    "103.31.4.0/22",
    "141.101.64.0/18",
    "108.162.192.0/18",
    "190.93.240.0/20",
    "188.114.96.0/20",
    "197.234.240.0/22",
    "198.41.128.0/17",
    "162.158.0.0/15",
    "104.16.0.0/13",
    "104.24.0.0/14",
    "172.64.0.0/13",
    "131.0.72.0/22",
];
pub const IPV6_CIDRS: &[&str] = &[
    "2400:cb00::/32",
    "2606:4700::/32",
    "2803:f800::/32",
    "2405:b500::/32",
    "2405:8100::/32",
    "2a06:98c0::/29",
    "2c0f:f248::/32",
];

#[derive(Clone)]
struct Zone {
    id: String,
    name: String,
    records: Vec<Value>,
    /// The entrypoint ruleset of the custom firewall phase, when one exists.
    ruleset: Option<Value>,
    settings: BTreeMap<String, Value>,
}

/// One certificate the Origin CA issued.
#[derive(Debug, Clone)]
pub struct IssuedCert {
    pub id: String,
    pub hostnames: Vec<String>,
    pub request_type: String,
    pub requested_validity: u64,
    /// PEM.
    pub certificate: String,
    /// PEM, as received.
    pub csr: String,
}

/// The emulator's Origin CA: a self-signed ECDSA root standing in for Cloudflare's
/// (which signs with RSA or ECDSA by request_type; the emulator signs both with this one).
struct OriginCa {
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
}

impl OriginCa {
    fn new() -> OriginCa {
        let key = rcgen::KeyPair::generate().expect("generating the Origin CA key");
        let mut params = rcgen::CertificateParams::default();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "CloudFlare, Inc.");
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            "CloudFlare Origin SSL ECC Certificate Authority",
        );
        let cert = params
            .self_signed(&key)
            .expect("self-signing the Origin CA");
        OriginCa { cert, key }
    }
}

struct State {
    token: String,
    origin_ca: OriginCa,
    certificates: Vec<IssuedCert>,
    zones: Vec<Zone>,
    next_id: u64,
    batch_limit: usize,
    /// Answers given to the next API requests instead of serving them, each for any
    /// request or only for `(method, path suffix)`.
    faults: VecDeque<(Option<(String, String)>, Reply)>,
    ipv4: Vec<String>,
    ipv6: Vec<String>,
    ips_etag: String,
    clock: u64,
}

impl Zone {
    /// The zone's identity and settings without its records and rules.
    fn clone_empty(&self) -> Zone {
        Zone {
            id: self.id.clone(),
            name: self.name.clone(),
            records: Vec::new(),
            ruleset: None,
            settings: self.settings.clone(),
        }
    }
}

impl State {
    fn new_id(&mut self) -> String {
        self.next_id += 1;
        format!("{:032x}", self.next_id * 0x9e37_79b9 + 0x1234_5678)
    }

    /// A monotonic fake timestamp, so modified_on changes on every write.
    fn now(&mut self) -> String {
        self.clock += 1;
        let secs = self.clock % 60;
        let mins = (self.clock / 60) % 60;
        format!("2024-05-01T10:{mins:02}:{secs:02}.000000Z")
    }

    fn zone_mut(&mut self, id: &str) -> Option<&mut Zone> {
        self.zones.iter_mut().find(|z| z.id == id)
    }
}

/// The emulator: an [`HttpStub`] whose routes implement the API over in-memory zones.
pub struct CloudflareEmulator {
    stub: HttpStub,
    state: Arc<Mutex<State>>,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

/// A Cloudflare API error `{code, message}`.
#[derive(Debug, Clone)]
struct ApiError {
    status: u16,
    code: u32,
    message: String,
}

fn err(status: u16, code: u32, message: impl Into<String>) -> ApiError {
    ApiError {
        status,
        code,
        message: message.into(),
    }
}

type ApiResult = Result<(Value, Option<Value>), ApiError>;

fn envelope_ok(result: Value, info: Option<Value>) -> Reply {
    let mut body = json!({"success": true, "errors": [], "messages": [], "result": result});
    if let Some(info) = info {
        body["result_info"] = info;
    }
    Reply::status(200).json(&body)
}

fn envelope_err(e: &ApiError) -> Reply {
    Reply::status(e.status).json(&json!({
        "success": false,
        "errors": [{"code": e.code, "message": e.message}],
        "messages": [],
        "result": null
    }))
}

/// The envelope of a failed call, as the real API sends it (for faults tests inject).
pub fn error_reply(status: u16, code: u32, message: &str) -> Reply {
    envelope_err(&err(status, code, message))
}

impl CloudflareEmulator {
    /// Start on a free loopback port; requests must carry `Authorization: Bearer <token>`.
    pub fn start(token: &str) -> CloudflareEmulator {
        let state = Arc::new(Mutex::new(State {
            token: token.to_string(),
            origin_ca: OriginCa::new(),
            certificates: Vec::new(),
            zones: Vec::new(),
            next_id: 0,
            batch_limit: 200,
            faults: VecDeque::new(),
            ipv4: IPV4_CIDRS.iter().map(|s| s.to_string()).collect(),
            ipv6: IPV6_CIDRS.iter().map(|s| s.to_string()).collect(),
            ips_etag: "38f79d050aa027e3be3865e495dcc9bc".into(),
            clock: 0,
        }));
        let stub = HttpStub::start();
        let st = state.clone();
        stub.route_fn("*", &format!("{API_PREFIX}/*"), move |req| handle(&st, req));
        CloudflareEmulator { stub, state }
    }

    /// The API base to put in `[cloudflare] api`: `http://127.0.0.1:PORT/client/v4`.
    pub fn api_url(&self) -> String {
        format!("{}{API_PREFIX}", self.stub.url())
    }

    /// Every request received (for call counts and header checks).
    pub fn requests(&self) -> Vec<Request> {
        self.stub.requests()
    }

    /// How many requests of `method` reached a path ending in `suffix` (`*` for any method).
    pub fn count(&self, method: &str, suffix: &str) -> usize {
        self.stub
            .requests()
            .iter()
            .filter(|r| method == "*" || r.method.eq_ignore_ascii_case(method))
            .filter(|r| r.path().ends_with(suffix))
            .count()
    }

    pub fn clear_requests(&self) {
        self.stub.clear_requests();
    }

    /// Add an active zone; returns its id.
    pub fn add_zone(&self, name: &str) -> String {
        let mut st = lock(&self.state);
        let id = st.new_id();
        let mut settings = BTreeMap::new();
        for (k, v) in [
            ("ssl", json!("full")),
            ("min_tls_version", json!("1.0")),
            ("always_use_https", json!("off")),
            ("tls_1_3", json!("on")),
            ("security_level", json!("medium")),
            ("browser_cache_ttl", json!(14400)),
        ] {
            settings.insert(k.to_string(), v);
        }
        st.zones.push(Zone {
            id: id.clone(),
            name: name.to_string(),
            records: Vec::new(),
            ruleset: None,
            settings,
        });
        id
    }

    /// Add a record as if made by hand or another tool (validated like a POST).
    /// `rec` holds `name` (FQDN or relative), `type`, `content`, optional `proxied`, `ttl`,
    /// `comment`, `priority`. Returns the stored record.
    pub fn add_record(&self, zone_id: &str, rec: Value) -> Value {
        let mut st = lock(&self.state);
        let now = st.now();
        let id = st.new_id();
        let zone = st.zone_mut(zone_id).expect("unknown zone id");
        let stored = new_record(zone, &rec, id, &now)
            .unwrap_or_else(|e| panic!("add_record {rec}: {} {}", e.code, e.message));
        zone.records.push(stored.clone());
        stored
    }

    /// Add `n` records quickly: each is validated alone (not against the zone's other
    /// records, which would make big fixtures quadratic). `f(i)` gives each one's fields.
    pub fn add_records(&self, zone_id: &str, n: usize, f: impl Fn(usize) -> Value) {
        let mut st = lock(&self.state);
        let now = st.now();
        let ids: Vec<String> = (0..n).map(|_| st.new_id()).collect();
        let zone = st.zone_mut(zone_id).expect("unknown zone id");
        let alone = zone.clone_empty();
        for (i, id) in ids.into_iter().enumerate() {
            let rec = new_record(&alone, &f(i), id, &now)
                .unwrap_or_else(|e| panic!("add_records #{i}: {}", e.message));
            zone.records.push(rec);
        }
    }

    /// The zone's records as the API would list them.
    pub fn records(&self, zone_id: &str) -> Vec<Value> {
        let st = lock(&self.state);
        st.zones
            .iter()
            .find(|z| z.id == zone_id)
            .map(|z| z.records.clone())
            .unwrap_or_default()
    }

    /// The custom-firewall entrypoint ruleset, if the zone has one.
    pub fn ruleset(&self, zone_id: &str) -> Option<Value> {
        let st = lock(&self.state);
        st.zones
            .iter()
            .find(|z| z.id == zone_id)
            .and_then(|z| z.ruleset.clone())
    }

    /// Create or replace the entrypoint's rules (as the dashboard would).
    pub fn set_rules(&self, zone_id: &str, rules: Vec<Value>) {
        let mut st = lock(&self.state);
        let now = st.now();
        let mut ids = Vec::new();
        for _ in 0..=rules.len() {
            ids.push(st.new_id());
        }
        let zone = st.zone_mut(zone_id).expect("unknown zone id");
        let rules = prepare_rules(&rules, &mut ids.clone().into_iter(), &now, "1", zone)
            .unwrap_or_else(|e| panic!("set_rules: {}", e.message));
        let id = zone
            .ruleset
            .as_ref()
            .and_then(|r| r["id"].as_str().map(str::to_string))
            .unwrap_or_else(|| ids[0].clone());
        zone.ruleset = Some(ruleset_value(&id, rules, "1", &now));
    }

    /// The zone's settings by id.
    pub fn settings(&self, zone_id: &str) -> BTreeMap<String, Value> {
        let st = lock(&self.state);
        st.zones
            .iter()
            .find(|z| z.id == zone_id)
            .map(|z| z.settings.clone())
            .unwrap_or_default()
    }

    /// The per-batch limit of the zone's plan (200 on Free, 3,500 on paid plans).
    pub fn set_batch_limit(&self, n: usize) {
        lock(&self.state).batch_limit = n;
    }

    /// Answer the next `n` API requests with `reply` instead of serving them.
    pub fn fail_next(&self, n: usize, reply: Reply) {
        let mut st = lock(&self.state);
        for _ in 0..n {
            st.faults.push_back((None, reply.clone()));
        }
    }

    /// Answer the next `n` requests of `method` to a path ending in `suffix` with `reply`
    /// (e.g. a 500 for the batch POST only).
    pub fn fail_on(&self, method: &str, suffix: &str, n: usize, reply: Reply) {
        let mut st = lock(&self.state);
        for _ in 0..n {
            st.faults.push_back((
                Some((method.to_ascii_uppercase(), suffix.to_string())),
                reply.clone(),
            ));
        }
    }

    /// The next `n` requests get `429 Too Many Requests` with `Retry-After: secs`.
    pub fn rate_limit_next(&self, n: usize, retry_after_secs: u64) {
        self.fail_next(
            n,
            error_reply(
                429,
                971,
                "Please wait and consider throttling your request speed",
            )
            .header("Retry-After", &retry_after_secs.to_string()),
        );
    }

    /// The certificates `POST /certificates` issued, oldest first.
    pub fn origin_certs(&self) -> Vec<IssuedCert> {
        lock(&self.state).certificates.clone()
    }

    /// The emulator's Origin CA certificate (PEM), the issuer of every certificate.
    pub fn origin_ca_pem(&self) -> String {
        lock(&self.state).origin_ca.cert.pem()
    }

    /// Change what `/ips` serves (and its etag).
    pub fn set_ips(&self, v4: &[&str], v6: &[&str], etag: &str) {
        let mut st = lock(&self.state);
        st.ipv4 = v4.iter().map(|s| s.to_string()).collect();
        st.ipv6 = v6.iter().map(|s| s.to_string()).collect();
        st.ips_etag = etag.to_string();
    }
}

fn handle(state: &Mutex<State>, req: &Request) -> Reply {
    let mut st = lock(state);
    let hit = st.faults.iter().position(|(only, _)| {
        only.as_ref().is_none_or(|(m, suffix)| {
            req.method.eq_ignore_ascii_case(m) && req.path().ends_with(suffix.as_str())
        })
    });
    if let Some((_, fault)) = hit.and_then(|i| st.faults.remove(i)) {
        return fault;
    }
    let path = req.path().strip_prefix(API_PREFIX).unwrap_or("");
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let method = req.method.to_ascii_uppercase();
    if segs == ["ips"] && method == "GET" {
        let result = json!({"ipv4_cidrs": st.ipv4, "ipv6_cidrs": st.ipv6, "etag": st.ips_etag});
        return envelope_ok(result, None);
    }
    if let Err(e) = check_auth(&st, req) {
        return envelope_err(&e);
    }
    let query = parse_query(req.query().unwrap_or(""));
    let body = if req.body.is_empty() {
        Ok(Value::Null)
    } else {
        serde_json::from_slice::<Value>(&req.body)
            .map_err(|e| err(400, 6007, format!("Malformed JSON in request body: {e}")))
    };
    let result = body.and_then(|body| route(&mut st, &method, &segs, &query, &body));
    match result {
        Ok((result, info)) => envelope_ok(result, info),
        Err(e) => envelope_err(&e),
    }
}

fn check_auth(st: &State, req: &Request) -> Result<(), ApiError> {
    let Some(value) = req.header("Authorization") else {
        return Err(err(
            400,
            9106,
            "Missing X-Auth-Key, X-Auth-Email or Authorization headers",
        ));
    };
    let Some(token) = value.strip_prefix("Bearer ") else {
        return Err(err(400, 6111, "Invalid format for Authorization header"));
    };
    if token != st.token {
        return Err(err(403, 9109, "Invalid access token"));
    }
    Ok(())
}

fn no_route() -> ApiError {
    err(404, 7003, "No route for the URI")
}

fn route(
    st: &mut State,
    method: &str,
    segs: &[&str],
    query: &BTreeMap<String, String>,
    body: &Value,
) -> ApiResult {
    match (method, segs) {
        ("GET", ["zones"]) => list_zones(st, query),
        ("POST", ["certificates"]) => create_certificate(st, body),
        (_, ["zones", zone_id, rest @ ..]) => {
            let zone_id = zone_id.to_string();
            if st.zone_mut(&zone_id).is_none() {
                return Err(err(
                    404,
                    7003,
                    "Could not route to /zones/…: zone not found",
                ));
            }
            zone_route(st, &zone_id, method, rest, query, body)
        }
        _ => Err(no_route()),
    }
}

fn zone_route(
    st: &mut State,
    zone_id: &str,
    method: &str,
    rest: &[&str],
    query: &BTreeMap<String, String>,
    body: &Value,
) -> ApiResult {
    let now = st.now();
    match (method, rest) {
        ("GET", ["dns_records"]) => {
            let zone = st.zone_mut(zone_id).ok_or_else(no_route)?;
            list_records(zone, query)
        }
        ("POST", ["dns_records"]) => {
            let id = st.new_id();
            let zone = st.zone_mut(zone_id).ok_or_else(no_route)?;
            let rec = new_record(zone, body, id, &now)?;
            zone.records.push(rec.clone());
            Ok((rec, None))
        }
        ("POST", ["dns_records", "batch"]) => batch(st, zone_id, body, &now),
        (m @ ("PATCH" | "PUT" | "DELETE" | "GET"), ["dns_records", id]) => {
            let zone = st.zone_mut(zone_id).ok_or_else(no_route)?;
            one_record(zone, m, id, body, &now)
        }
        ("GET", ["rulesets", "phases", phase, "entrypoint"]) => {
            let zone = st.zone_mut(zone_id).ok_or_else(no_route)?;
            match (&zone.ruleset, *phase == CUSTOM_PHASE) {
                (Some(rs), true) => Ok((rs.clone(), None)),
                _ => Err(err(
                    404,
                    10003,
                    format!("could not find entrypoint ruleset in the {phase} phase"),
                )),
            }
        }
        ("PUT", ["rulesets", "phases", phase, "entrypoint"]) if *phase == CUSTOM_PHASE => {
            put_entrypoint(st, zone_id, body, &now)
        }
        ("POST", ["rulesets"]) => create_ruleset(st, zone_id, body, &now),
        ("GET", ["settings"]) => {
            let zone = st.zone_mut(zone_id).ok_or_else(no_route)?;
            let list: Vec<Value> = zone
                .settings
                .iter()
                .map(|(k, v)| setting_value(k, v))
                .collect();
            Ok((Value::Array(list), None))
        }
        ("GET", ["settings", id]) => {
            let zone = st.zone_mut(zone_id).ok_or_else(no_route)?;
            let v = zone.settings.get(*id).ok_or_else(no_route)?;
            Ok((setting_value(id, v), None))
        }
        ("PATCH", ["settings", id]) => {
            let zone = st.zone_mut(zone_id).ok_or_else(no_route)?;
            if !zone.settings.contains_key(*id) {
                return Err(no_route());
            }
            let value = body.get("value").cloned().unwrap_or(Value::Null);
            validate_setting(id, &value)?;
            zone.settings.insert(id.to_string(), value.clone());
            Ok((setting_value(id, &value), None))
        }
        _ => Err(no_route()),
    }
}

fn setting_value(id: &str, v: &Value) -> Value {
    json!({"id": id, "value": v, "editable": true, "modified_on": null})
}

fn validate_setting(id: &str, v: &Value) -> Result<(), ApiError> {
    let allowed: &[&str] = match id {
        "ssl" => &["off", "flexible", "full", "strict"],
        "min_tls_version" => &["1.0", "1.1", "1.2", "1.3"],
        "always_use_https" => &["on", "off"],
        "tls_1_3" => &["on", "off", "zrt"],
        "security_level" => &[
            "off",
            "essentially_off",
            "low",
            "medium",
            "high",
            "under_attack",
        ],
        "browser_cache_ttl" => {
            return if v.as_u64().is_some() {
                Ok(())
            } else {
                Err(err(
                    400,
                    1007,
                    "Invalid value for zone setting browser_cache_ttl",
                ))
            }
        }
        _ => return Ok(()),
    };
    match v.as_str() {
        Some(s) if allowed.contains(&s) => Ok(()),
        _ => Err(err(
            400,
            1007,
            format!("Invalid value for zone setting {id}"),
        )),
    }
}

fn list_zones(st: &State, query: &BTreeMap<String, String>) -> ApiResult {
    let matching: Vec<Value> = st
        .zones
        .iter()
        .filter(|z| query.get("name").is_none_or(|n| *n == z.name))
        .map(|z| json!({"id": z.id, "name": z.name, "status": "active", "paused": false, "type": "full"}))
        .collect();
    page(matching, query, 20, 50)
}

/// One page of `items` per `page`/`per_page`, with `result_info`.
fn page(
    items: Vec<Value>,
    query: &BTreeMap<String, String>,
    default: usize,
    max: usize,
) -> ApiResult {
    let per_page = match query.get("per_page") {
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| err(400, 1004, "per_page must be a positive integer"))?
            .min(max),
        None => default,
    };
    let page_no = match query.get("page") {
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| err(400, 1004, "page must be a positive integer"))?,
        None => 1,
    };
    let total = items.len();
    let total_pages = total.div_ceil(per_page).max(1);
    let slice: Vec<Value> = items
        .into_iter()
        .skip((page_no - 1).saturating_mul(per_page))
        .take(per_page)
        .collect();
    let info = json!({
        "page": page_no,
        "per_page": per_page,
        "count": slice.len(),
        "total_count": total,
        "total_pages": total_pages
    });
    Ok((Value::Array(slice), Some(info)))
}

fn list_records(zone: &Zone, query: &BTreeMap<String, String>) -> ApiResult {
    let matching: Vec<Value> = zone
        .records
        .iter()
        .filter(|r| {
            ["name", "type", "content", "comment"].iter().all(|k| {
                query
                    .get(*k)
                    .is_none_or(|want| r[*k].as_str().is_some_and(|v| v.eq_ignore_ascii_case(want)))
            })
        })
        .cloned()
        .collect();
    page(matching, query, 100, MAX_PER_PAGE)
}

const TYPES: &[&str] = &["A", "AAAA", "CNAME", "TXT", "MX", "SRV", "CAA", "NS"];

/// The record's FQDN: relative names and `@` are expanded, case folded, no trailing dot.
fn fqdn(zone: &str, name: &str) -> Result<String, ApiError> {
    let n = name.trim_end_matches('.').to_ascii_lowercase();
    let full = if n == "@" || n.is_empty() {
        zone.to_string()
    } else if n == zone || n.ends_with(&format!(".{zone}")) {
        n
    } else {
        format!("{n}.{zone}")
    };
    Ok(full)
}

/// Validate `fields` (a POST/PUT body, or a PATCH merged over the old record) into a
/// stored record.
fn new_record(zone: &Zone, fields: &Value, id: String, now: &str) -> Result<Value, ApiError> {
    let Some(obj) = fields.as_object() else {
        return Err(err(400, 9207, "Request body is invalid."));
    };
    let kind = obj
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| err(400, 9000, "DNS record type is invalid."))?;
    if !TYPES.contains(&kind) {
        return Err(err(400, 9000, "DNS record type is invalid."));
    }
    let name = obj
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| err(400, 9005, "DNS name is invalid."))?;
    let name = fqdn(&zone.name, name)?;
    let content = obj
        .get("content")
        .and_then(Value::as_str)
        .filter(|c| !c.is_empty())
        .ok_or_else(|| err(400, 9007, "Content for the record is invalid."))?
        .to_string();
    match kind {
        "A" if content.parse::<std::net::Ipv4Addr>().is_err() => {
            return Err(err(
                400,
                9005,
                "Content for A record must be a valid IPv4 address.",
            ))
        }
        "AAAA" if content.parse::<std::net::Ipv6Addr>().is_err() => {
            return Err(err(
                400,
                9006,
                "Content for AAAA record must be a valid IPv6 address.",
            ))
        }
        _ => {}
    }
    let content = match kind {
        "AAAA" => content
            .parse::<std::net::Ipv6Addr>()
            .map(|a| a.to_string())
            .unwrap_or(content),
        _ => content,
    };
    let proxiable = matches!(kind, "A" | "AAAA" | "CNAME");
    let proxied = obj.get("proxied").and_then(Value::as_bool).unwrap_or(false);
    if proxied && !proxiable {
        return Err(err(400, 9004, "This record type cannot be proxied."));
    }
    let ttl = match obj.get("ttl") {
        None | Some(Value::Null) => 1,
        Some(v) => v
            .as_u64()
            .filter(|t| *t == 1 || (60..=86400).contains(t))
            .ok_or_else(|| {
                err(
                    400,
                    9021,
                    "Invalid TTL. Must be between 60 and 86400 seconds, or 1 for automatic.",
                )
            })?,
    };
    let ttl = if proxied { 1 } else { ttl };
    let priority = obj.get("priority").and_then(Value::as_u64);
    if matches!(kind, "MX" | "SRV") && priority.is_none() {
        return Err(err(400, 9101, "priority is required for this record type"));
    }
    let comment = obj.get("comment").and_then(Value::as_str);
    if comment.is_some_and(|c| c.len() > 100) {
        return Err(err(
            400,
            9102,
            "comment is too long (100 characters at most)",
        ));
    }
    let same_name: Vec<&Value> = zone
        .records
        .iter()
        .filter(|r| r["id"] != id.as_str() && r["name"] == name.as_str())
        .collect();
    if same_name.iter().any(|r| {
        r["type"] == kind
            && r["content"]
                .as_str()
                .is_some_and(|c| c.eq_ignore_ascii_case(&content))
    }) {
        return Err(err(400, 81058, "An identical record already exists."));
    }
    let conflicts_with_cname = |r: &&&Value| {
        matches!(r["type"].as_str(), Some("A" | "AAAA" | "CNAME"))
            && (kind == "CNAME" || r["type"] == "CNAME")
    };
    if matches!(kind, "A" | "AAAA" | "CNAME") && same_name.iter().any(|r| conflicts_with_cname(&r))
    {
        return Err(err(
            400,
            81053,
            "An A, AAAA, or CNAME record with that host already exists.",
        ));
    }
    let mut rec = json!({
        "id": id,
        "zone_id": zone.id,
        "zone_name": zone.name,
        "name": name,
        "type": kind,
        "content": content,
        "proxiable": proxiable,
        "proxied": proxied,
        "ttl": ttl,
        "comment": comment,
        "tags": obj.get("tags").cloned().unwrap_or(json!([])),
        "created_on": now,
        "modified_on": now,
    });
    if let Some(p) = priority {
        rec["priority"] = json!(p);
    }
    Ok(rec)
}

/// A PATCH's fields over the stored record.
fn patched(old: &Value, patch: &Value) -> Value {
    let mut merged = old.clone();
    if let (Some(m), Some(p)) = (merged.as_object_mut(), patch.as_object()) {
        for (k, v) in p {
            m.insert(k.clone(), v.clone());
        }
    }
    merged
}

fn one_record(zone: &mut Zone, method: &str, id: &str, body: &Value, now: &str) -> ApiResult {
    let idx = zone
        .records
        .iter()
        .position(|r| r["id"] == id)
        .ok_or_else(|| err(404, 81044, "Record does not exist."))?;
    match method {
        "GET" => Ok((zone.records[idx].clone(), None)),
        "DELETE" => {
            zone.records.remove(idx);
            Ok((json!({"id": id}), None))
        }
        _ => {
            let old = zone.records[idx].clone();
            let fields = if method == "PATCH" {
                patched(&old, body)
            } else {
                body.clone()
            };
            let mut rec = new_record(zone, &fields, id.to_string(), now)?;
            rec["created_on"] = old["created_on"].clone();
            zone.records[idx] = rec.clone();
            Ok((rec, None))
        }
    }
}

/// `POST …/dns_records/batch`: one transaction over a copy of the zone, applied in the
/// order deletes → patches → puts → posts; any error leaves the zone unchanged.
fn batch(st: &mut State, zone_id: &str, body: &Value, now: &str) -> ApiResult {
    let list = |k: &str| -> Result<Vec<Value>, ApiError> {
        match body.get(k) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(a)) => Ok(a.clone()),
            Some(_) => Err(err(400, 9207, format!("{k} must be an array"))),
        }
    };
    let (deletes, patches, puts, posts) = (
        list("deletes")?,
        list("patches")?,
        list("puts")?,
        list("posts")?,
    );
    let total = deletes.len() + patches.len() + puts.len() + posts.len();
    if total > st.batch_limit {
        return Err(err(
            400,
            81060,
            format!(
                "Batch contains {total} changes, more than the {} allowed per batch on this plan",
                st.batch_limit
            ),
        ));
    }
    let new_ids: Vec<String> = posts.iter().map(|_| st.new_id()).collect();
    let mut zone = st.zone_mut(zone_id).ok_or_else(no_route)?.clone();
    let id_of = |v: &Value| -> Result<String, ApiError> {
        v.get("id")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| err(400, 9207, "id is required"))
    };
    let mut out = json!({"deletes": [], "patches": [], "puts": [], "posts": []});
    let fail = |i: usize, what: &str, e: ApiError| ApiError {
        message: format!("{what}[{i}]: {}", e.message),
        ..e
    };
    for (i, d) in deletes.iter().enumerate() {
        let id = id_of(d).map_err(|e| fail(i, "deletes", e))?;
        let (r, _) = one_record(&mut zone, "GET", &id, &Value::Null, now)
            .map_err(|e| fail(i, "deletes", e))?;
        one_record(&mut zone, "DELETE", &id, &Value::Null, now)
            .map_err(|e| fail(i, "deletes", e))?;
        push(&mut out["deletes"], r);
    }
    for (key, items, method) in [("patches", &patches, "PATCH"), ("puts", &puts, "PUT")] {
        for (i, p) in items.iter().enumerate() {
            let id = id_of(p).map_err(|e| fail(i, key, e))?;
            let (r, _) = one_record(&mut zone, method, &id, p, now).map_err(|e| fail(i, key, e))?;
            push(&mut out[key], r);
        }
    }
    for (i, (p, id)) in posts.iter().zip(new_ids).enumerate() {
        let rec = new_record(&zone, p, id, now).map_err(|e| fail(i, "posts", e))?;
        zone.records.push(rec.clone());
        push(&mut out["posts"], rec);
    }
    if let Some(z) = st.zone_mut(zone_id) {
        *z = zone;
    }
    Ok((out, None))
}

fn push(list: &mut Value, v: Value) {
    if let Some(a) = list.as_array_mut() {
        a.push(v);
    }
}

const ACTIONS: &[&str] = &[
    "block",
    "challenge",
    "js_challenge",
    "managed_challenge",
    "log",
    "skip",
];

/// Validate rules and give new ones an id (and `ref` = id when none was given).
fn prepare_rules(
    rules: &[Value],
    ids: &mut impl Iterator<Item = String>,
    now: &str,
    version: &str,
    zone: &Zone,
) -> Result<Vec<Value>, ApiError> {
    let existing: Vec<&Value> = zone
        .ruleset
        .as_ref()
        .and_then(|r| r["rules"].as_array())
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let mut out = Vec::new();
    let mut refs = Vec::new();
    for (i, rule) in rules.iter().enumerate() {
        let Some(obj) = rule.as_object() else {
            return Err(err(400, 20021, format!("rules[{i}]: expected an object")));
        };
        let action = obj.get("action").and_then(Value::as_str).unwrap_or("");
        if !ACTIONS.contains(&action) {
            return Err(err(
                400,
                20021,
                format!("rules[{i}].action: {action:?} is not a valid action for this phase"),
            ));
        }
        let expression = obj.get("expression").and_then(Value::as_str).unwrap_or("");
        if expression.trim().is_empty() {
            return Err(err(
                400,
                20021,
                format!("rules[{i}].expression: filter parsing error: empty expression"),
            ));
        }
        let mut r: Map<String, Value> = obj.clone();
        let id = match obj.get("id").and_then(Value::as_str) {
            Some(id) if existing.iter().any(|e| e["id"] == id) => id.to_string(),
            Some(id) => {
                return Err(err(
                    400,
                    20021,
                    format!("rules[{i}].id: rule {id} does not exist in this ruleset"),
                ))
            }
            None => ids.next().unwrap_or_default(),
        };
        let rref = obj
            .get("ref")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| id.clone());
        if refs.contains(&rref) {
            return Err(err(
                400,
                20021,
                format!("rules[{i}].ref: duplicate ref {rref:?}"),
            ));
        }
        refs.push(rref.clone());
        r.insert("id".into(), json!(id));
        r.insert("ref".into(), json!(rref));
        r.entry("enabled").or_insert(json!(true));
        r.entry("description").or_insert(json!(""));
        r.insert("version".into(), json!(version));
        r.insert("last_updated".into(), json!(now));
        out.push(Value::Object(r));
    }
    Ok(out)
}

fn ruleset_value(id: &str, rules: Vec<Value>, version: &str, now: &str) -> Value {
    json!({
        "id": id,
        "name": "default",
        "description": "",
        "kind": "zone",
        "phase": CUSTOM_PHASE,
        "rules": rules,
        "version": version,
        "last_updated": now
    })
}

fn put_entrypoint(st: &mut State, zone_id: &str, body: &Value, now: &str) -> ApiResult {
    let rules = body
        .get("rules")
        .and_then(Value::as_array)
        .cloned()
        .ok_or_else(|| err(400, 20021, "rules: expected an array"))?;
    let ids: Vec<String> = (0..=rules.len()).map(|_| st.new_id()).collect();
    let zone = st.zone_mut(zone_id).ok_or_else(no_route)?;
    let (rs_id, version) = match &zone.ruleset {
        Some(rs) => (
            rs["id"].as_str().unwrap_or_default().to_string(),
            rs["version"]
                .as_str()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
                + 1,
        ),
        None => (ids[0].clone(), 1),
    };
    let version = version.to_string();
    let rules = prepare_rules(&rules, &mut ids.into_iter().skip(1), now, &version, zone)?;
    let rs = ruleset_value(&rs_id, rules, &version, now);
    zone.ruleset = Some(rs.clone());
    Ok((rs, None))
}

fn create_ruleset(st: &mut State, zone_id: &str, body: &Value, now: &str) -> ApiResult {
    if body.get("kind").and_then(Value::as_str) != Some("zone") {
        return Err(err(
            400,
            20021,
            "kind: only zone rulesets can be created here",
        ));
    }
    if body.get("phase").and_then(Value::as_str) != Some(CUSTOM_PHASE) {
        return Err(err(
            400,
            20021,
            "phase: this emulator knows only http_request_firewall_custom",
        ));
    }
    if body
        .get("name")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Err(err(400, 20021, "name: required"));
    }
    let rules = body
        .get("rules")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let ids: Vec<String> = (0..=rules.len()).map(|_| st.new_id()).collect();
    let zone = st.zone_mut(zone_id).ok_or_else(no_route)?;
    if zone.ruleset.is_some() {
        return Err(err(
            400,
            20217,
            "A similar configuration with rules already exists and overwriting will have unintended consequences",
        ));
    }
    let rules = prepare_rules(&rules, &mut ids.clone().into_iter().skip(1), now, "1", zone)?;
    let mut rs = ruleset_value(&ids[0], rules, "1", now);
    if let Some(n) = body.get("name") {
        rs["name"] = n.clone();
    }
    zone.ruleset = Some(rs.clone());
    Ok((rs, None))
}

/// The validities the Origin CA offers, in days.
const VALIDITIES: &[u64] = &[7, 30, 90, 365, 730, 1095, 5475];

/// `POST /certificates`: validate like the Origin CA, then sign a certificate for the
/// hostnames (not the CSR's names) with the CSR's public key.
fn create_certificate(st: &mut State, body: &Value) -> ApiResult {
    let csr_pem = body
        .get("csr")
        .and_then(Value::as_str)
        .filter(|c| !c.trim().is_empty())
        .ok_or_else(|| err(400, 1001, "csr: a certificate signing request is required"))?;
    let request_type = body
        .get("request_type")
        .and_then(Value::as_str)
        .unwrap_or("");
    if !["origin-rsa", "origin-ecc", "keyless-certificate"].contains(&request_type) {
        return Err(err(
            400,
            1002,
            "request_type: must be one of origin-rsa, origin-ecc, keyless-certificate",
        ));
    }
    let validity = match body.get("requested_validity") {
        None | Some(Value::Null) => 5475,
        Some(v) => v
            .as_u64()
            .filter(|d| VALIDITIES.contains(d))
            .ok_or_else(|| {
                err(
                    400,
                    1003,
                    "requested_validity: must be one of 7, 30, 90, 365, 730, 1095, 5475",
                )
            })?,
    };
    let hostnames: Vec<String> = body
        .get("hostnames")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    if hostnames.is_empty() {
        return Err(err(
            400,
            1004,
            "hostnames: at least one hostname is required",
        ));
    }
    for h in &hostnames {
        check_origin_hostname(st, h)?;
    }
    let csr = rcgen::CertificateSigningRequestParams::from_pem(csr_pem).map_err(|e| {
        err(
            400,
            1005,
            format!("csr: failed to parse or verify the CSR: {e}"),
        )
    })?;
    let now = chrono::Utc::now();
    let expires = now + chrono::Duration::days(i64::try_from(validity).unwrap_or(5475));
    let mut params = rcgen::CertificateParams::new(hostnames.clone())
        .map_err(|e| err(400, 1004, format!("hostnames: {e}")))?;
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "CloudFlare, Inc.");
    params.distinguished_name.push(
        rcgen::DnType::OrganizationalUnitName,
        "CloudFlare Origin CA",
    );
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "CloudFlare Origin Certificate");
    // rcgen's time type is not ours to name: build it from the calendar fields.
    let to_rcgen = |t: chrono::DateTime<chrono::Utc>| {
        use chrono::{Datelike, Timelike};
        let day = rcgen::date_time_ymd(t.year(), t.month() as u8, t.day() as u8);
        day.replace_hour(t.hour() as u8)
            .and_then(|d| d.replace_minute(t.minute() as u8))
            .and_then(|d| d.replace_second(t.second() as u8))
            .unwrap_or(day)
    };
    params.not_before = to_rcgen(now - chrono::Duration::minutes(1));
    params.not_after = to_rcgen(expires);
    let id = st.new_id();
    // The id's 16 bytes, positive (a serial is at most 20 octets).
    let mut serial = hex::decode(&id).unwrap_or_else(|_| vec![1]);
    if let Some(b) = serial.first_mut() {
        *b = (*b & 0x7f).max(1);
    }
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
    let signing = rcgen::CertificateSigningRequestParams {
        params,
        public_key: csr.public_key,
    };
    let cert = signing
        .signed_by(&st.origin_ca.cert, &st.origin_ca.key)
        .map_err(|e| err(500, 1100, format!("signing failed: {e}")))?;
    let pem = cert.pem();
    st.certificates.push(IssuedCert {
        id: id.clone(),
        hostnames: hostnames.clone(),
        request_type: request_type.to_string(),
        requested_validity: validity,
        certificate: pem.clone(),
        csr: csr_pem.to_string(),
    });
    Ok((
        json!({
            "id": id,
            "certificate": pem,
            "hostnames": hostnames,
            "expires_on": expires.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            "request_type": request_type,
            "requested_validity": validity,
            "csr": csr_pem,
        }),
        None,
    ))
}

/// An Origin CA hostname: an FQDN in one of the account's zones, or `*.` and one (a single
/// leading wildcard over a name of at least two labels).
fn check_origin_hostname(st: &State, h: &str) -> Result<(), ApiError> {
    let bad = |why: &str| {
        err(
            400,
            1010,
            format!("Failed to validate requested hostname {h}: {why}"),
        )
    };
    let base = h.strip_prefix("*.").unwrap_or(h);
    if base.contains('*') {
        return Err(bad(
            "wildcards are allowed only as a leading *. of one level",
        ));
    }
    if !base.contains('.')
        || base
            .split('.')
            .any(|l| l.is_empty() || !l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
    {
        return Err(bad("not a fully qualified domain name"));
    }
    let in_zone = st
        .zones
        .iter()
        .any(|z| base == z.name || base.ends_with(&format!(".{}", z.name)));
    if !in_zone {
        return Err(bad(
            "This zone is either not part of your account, or you do not have access to it.",
        ));
    }
    Ok(())
}

fn parse_query(q: &str) -> BTreeMap<String, String> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
