//! An emulator of the OVH API (`/1.0`) for tests, on an [`HttpStub`]. It checks what OVH
//! checks: the application key, the consumer key's state and access rules, the `$1$`
//! signature over the exact URL and body, and the timestamp window (against its own clock,
//! which a test may set minutes off the local one). It implements the cart flow with its
//! validations (offers, durations, options, required configurations and their allowed
//! values), orders whose status moves checking → delivering → delivered on an accelerated
//! clock and then deliver a dedicated server (and IP blocks), IP move tasks, and the edge
//! network firewall with its 20-rule limit. Faults are injectable, among them a checkout
//! that commits the order and then answers 503.
//!
//! ```no_run
//! use pimops_test_support::ovh_emulator::{OvhEmulator, APP_KEY};
//! let ovh = OvhEmulator::start();
//! ovh.set_clock_offset(600);
//! // point the tool at ovh.url() with OVH_APPLICATION_KEY=APP_KEY, ...
//! assert_eq!(ovh.order_ids().len(), 1);
//! ```

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sha1::{Digest, Sha1};

use crate::http_stub::{HttpStub, Reply, Request};

pub const APP_KEY: &str = "emu-application-key";
pub const APP_SECRET: &str = "emu-application-secret";
/// A validated consumer key with every access rule ovh-order asks for.
pub const CONSUMER_KEY: &str = "emu-consumer-key";
/// Seconds a signed call's timestamp may be off the emulator's clock.
pub const TIMESTAMP_WINDOW: i64 = 30;

/// The emulator; stops with the stub when dropped.
pub struct OvhEmulator {
    stub: HttpStub,
    state: Arc<Mutex<State>>,
}

struct Consumer {
    state: String,
    rules: Vec<(String, String)>,
}

struct Offer {
    plan_code: String,
    product_name: String,
    price: f64,
    durations: Vec<String>,
    datacenters: Vec<String>,
    os: Vec<String>,
    regions: Vec<String>,
    options: Vec<(String, f64)>,
}

#[derive(Clone)]
struct Item {
    id: u64,
    product: String,
    plan_code: String,
    duration: String,
    price: f64,
    parent: Option<u64>,
    config: BTreeMap<String, String>,
}

struct Cart {
    subsidiary: String,
    assigned: bool,
    checked_out: bool,
    items: Vec<Item>,
}

struct Order {
    created: Instant,
    date: String,
    items: Vec<Item>,
    forced: Option<String>,
    delivered: bool,
    domains: Vec<String>,
    /// `/me/order` lists that still leave this order out (an order OVH lists late).
    unlisted_for: u32,
}

struct Task {
    ip: String,
    to: String,
    created: Instant,
}

struct Firewall {
    enabled: bool,
    rules: BTreeMap<u64, Value>,
}

struct Fault {
    method: String,
    path_prefix: String,
    status: u16,
    times: u32,
}

struct State {
    base_path: String,
    host: String,
    clock_offset: i64,
    consumers: BTreeMap<String, Consumer>,
    offers: Vec<Offer>,
    ip_offers: Vec<(String, f64)>,
    carts: BTreeMap<String, Cart>,
    orders: BTreeMap<u64, Order>,
    servers: BTreeMap<String, Value>,
    ips: BTreeMap<String, Option<String>>,
    tasks: BTreeMap<u64, Task>,
    firewalls: BTreeMap<(String, String), Firewall>,
    step: Duration,
    checkout_commit_then_503: u32,
    checkout_503: u32,
    /// The next checkout's order stays out of this many `/me/order` lists.
    checkout_unlisted: u32,
    faults: Vec<Fault>,
    next_id: u64,
    query: u64,
}

/// The access rules ovh-order asks for (and the default consumer key holds).
fn full_rules() -> Vec<(String, String)> {
    ["GET", "POST", "PUT", "DELETE"]
        .iter()
        .flat_map(|m| {
            [
                "/order/*",
                "/me/order",
                "/me/order/*",
                "/dedicated/server",
                "/dedicated/server/*",
                "/ip",
                "/ip/*",
            ]
            .iter()
            .map(move |p| (m.to_string(), p.to_string()))
        })
        .collect()
}

impl OvhEmulator {
    /// Start with one application, one validated consumer key, and a catalogue: plan
    /// `24adv01` (EUR 89.99, P1M or P12M, datacenters rbx/gra/sbg, options
    /// `ram-64g-ecc-24adv01` and `bandwidth-1000-24adv01`) and IP plan `ip-v4-s30-ripe`.
    pub fn start() -> OvhEmulator {
        let stub = HttpStub::start();
        let mut consumers = BTreeMap::new();
        consumers.insert(
            CONSUMER_KEY.to_string(),
            Consumer {
                state: "validated".into(),
                rules: full_rules(),
            },
        );
        let state = Arc::new(Mutex::new(State {
            base_path: "/1.0".into(),
            host: stub.url().trim_end_matches('/').to_string(),
            clock_offset: 0,
            consumers,
            offers: vec![Offer {
                plan_code: "24adv01".into(),
                product_name: "ADVANCE-1 | AMD EPYC 4244P".into(),
                price: 89.99,
                durations: vec!["P1M".into(), "P12M".into()],
                datacenters: vec!["rbx".into(), "gra".into(), "sbg".into()],
                os: vec!["none_64.en".into(), "debian12_64".into()],
                regions: vec!["europe".into()],
                options: vec![
                    ("ram-64g-ecc-24adv01".into(), 10.0),
                    ("bandwidth-1000-24adv01".into(), 0.0),
                ],
            }],
            ip_offers: vec![("ip-v4-s30-ripe".into(), 6.0)],
            carts: BTreeMap::new(),
            orders: BTreeMap::new(),
            servers: BTreeMap::new(),
            ips: BTreeMap::new(),
            tasks: BTreeMap::new(),
            firewalls: BTreeMap::new(),
            step: Duration::from_millis(1500),
            checkout_commit_then_503: 0,
            checkout_503: 0,
            checkout_unlisted: 0,
            faults: Vec::new(),
            next_id: 100_000,
            query: 0,
        }));
        let shared = state.clone();
        stub.route_fn("*", "/1.0/*", move |req| {
            let mut st = shared.lock().unwrap_or_else(|p| p.into_inner());
            st.query += 1;
            let qid = format!("EU.ext-emu.{}", st.query);
            let (status, body) = st.handle(req);
            let reply = Reply::status(status).header("X-Ovh-QueryID", &qid);
            match body {
                Body::Json(v) => reply.json(&v),
                Body::Text(t) => reply.body(t),
            }
        });
        OvhEmulator { stub, state }
    }

    fn st(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The API base URL (`http://127.0.0.1:PORT/1.0`).
    pub fn url(&self) -> String {
        format!("{}/1.0", self.stub.url().trim_end_matches('/'))
    }

    /// The stub underneath, for request assertions (paths include `/1.0`).
    pub fn stub(&self) -> &HttpStub {
        &self.stub
    }

    /// The emulator's clock runs this many seconds ahead of the local one.
    pub fn set_clock_offset(&self, secs: i64) {
        self.st().clock_offset = secs;
    }

    /// How long an order stays in each status before the next (default 1.5 s).
    pub fn set_status_step(&self, step: Duration) {
        self.st().step = step;
    }

    /// The next `times` checkouts place the order, then answer 503.
    pub fn fail_checkout_after_commit(&self, times: u32) {
        self.st().checkout_commit_then_503 = times;
    }

    /// The next checkout places the order and answers 503, and the order is left out of
    /// the next `lists` answers of `GET /me/order`, as when OVH lists a new order late.
    pub fn fail_checkout_after_commit_listed_late(&self, lists: u32) {
        let mut st = self.st();
        st.checkout_commit_then_503 = 1;
        st.checkout_unlisted = lists;
    }

    /// The next `times` checkouts answer 503 without placing the order.
    pub fn fail_checkout_before_commit(&self, times: u32) {
        self.st().checkout_503 = times;
    }

    /// The next `times` calls whose path (after `/1.0`) starts with `path_prefix` answer
    /// `status` without doing anything.
    pub fn fail_next(&self, method: &str, path_prefix: &str, status: u16, times: u32) {
        self.st().faults.push(Fault {
            method: method.to_ascii_uppercase(),
            path_prefix: path_prefix.into(),
            status,
            times,
        });
    }

    /// Force an order's status (`cancelled`, `notPaid`, ...).
    pub fn set_order_status(&self, order_id: u64, status: &str) {
        if let Some(o) = self.st().orders.get_mut(&order_id) {
            o.forced = Some(status.into());
        }
    }

    /// Every order placed, oldest first.
    pub fn order_ids(&self) -> Vec<u64> {
        self.st().orders.keys().copied().collect()
    }

    /// A consumer key in `state` (`pendingValidation`, `validated`, `expired`) with all rules.
    pub fn add_consumer(&self, key: &str, state: &str) {
        self.st().consumers.insert(
            key.into(),
            Consumer {
                state: state.into(),
                rules: full_rules(),
            },
        );
    }

    /// A consumer key as it is after `POST /auth/credential`, and its access rules.
    pub fn consumer(&self, key: &str) -> Option<(String, Vec<(String, String)>)> {
        self.st()
            .consumers
            .get(key)
            .map(|c| (c.state.clone(), c.rules.clone()))
    }

    /// A delivered server, outside any order.
    pub fn add_server(&self, name: &str, ip: &str, datacenter: &str) {
        let mut st = self.st();
        st.servers
            .insert(name.into(), server_json(name, ip, datacenter));
        st.ips.insert(format!("{ip}/32"), Some(name.into()));
    }

    /// An IP block, optionally routed to a server.
    pub fn add_ip_block(&self, block: &str, routed_to: Option<&str>) {
        self.st()
            .ips
            .insert(block.into(), routed_to.map(str::to_string));
    }

    /// Where an IP block is routed.
    pub fn routed_to(&self, block: &str) -> Option<String> {
        self.st().ips.get(block).cloned().flatten()
    }

    /// The firewall rules of `ip` in `block`, by sequence.
    pub fn firewall_rules(&self, block: &str, ip: &str) -> Vec<Value> {
        self.st()
            .firewalls
            .get(&(block.to_string(), ip.to_string()))
            .map(|f| f.rules.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Whether the firewall of `ip` in `block` exists and is enabled.
    pub fn firewall_enabled(&self, block: &str, ip: &str) -> bool {
        self.st()
            .firewalls
            .get(&(block.to_string(), ip.to_string()))
            .is_some_and(|f| f.enabled)
    }
}

enum Body {
    Json(Value),
    Text(String),
}

type Answer = (u16, Body);

fn ok(v: Value) -> Answer {
    (200, Body::Json(v))
}

fn err(status: u16, class: &str, message: impl Into<String>) -> Answer {
    (
        status,
        Body::Json(json!({"class": class, "message": message.into()})),
    )
}

/// The older error shape OVH still uses for authentication errors.
fn auth_err(status: u16, code: &str, message: &str) -> Answer {
    let http = if status == 400 {
        "400 Bad Request"
    } else {
        "403 Forbidden"
    };
    (
        status,
        Body::Json(json!({"errorCode": code, "httpCode": http, "message": message})),
    )
}

fn not_found(what: &str) -> Answer {
    err(
        404,
        "Client::NotFound",
        format!("The requested object ({what}) does not exist"),
    )
}

fn bad(message: impl Into<String>) -> Answer {
    err(400, "Client::BadParameters", message)
}

fn price(value: f64) -> Value {
    json!({"currencyCode": "EUR", "text": format!("{value:.2} €"), "value": (value * 100.0).round() / 100.0})
}

fn server_json(name: &str, ip: &str, datacenter: &str) -> Value {
    json!({"name": name, "ip": ip, "datacenter": datacenter, "state": "ok",
           "commercialRange": "advance-1", "os": "none_64", "reverse": name, "serverId": 1})
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Some(b) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query_param(req: &Request, key: &str) -> Option<String> {
    req.query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (percent_decode(k) == key).then(|| percent_decode(v))
    })
}

/// An access-rule path with `*` wildcards matching any characters.
fn rule_matches(pattern: &str, path: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == path,
        Some((head, tail)) => {
            let Some(rest) = path.strip_prefix(head) else {
                return false;
            };
            (0..=rest.len()).any(|i| rest.is_char_boundary(i) && rule_matches(tail, &rest[i..]))
        }
    }
}

fn valid_ipv4_cidr(s: &str) -> bool {
    let (addr, prefix) = s.split_once('/').unwrap_or((s, "32"));
    addr.parse::<std::net::Ipv4Addr>().is_ok() && prefix.parse::<u8>().is_ok_and(|p| p <= 32)
}

impl State {
    fn now(&self) -> i64 {
        chrono::Utc::now().timestamp() + self.clock_offset
    }

    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn handle(&mut self, req: &Request) -> Answer {
        let Some(path) = req.path().strip_prefix(&self.base_path) else {
            return not_found("path");
        };
        let path = path.to_string();
        let method = req.method.to_ascii_uppercase();
        if method == "GET" && path == "/auth/time" {
            return (200, Body::Text(self.now().to_string()));
        }
        if req.header("X-Ovh-Application") != Some(APP_KEY) {
            return auth_err(403, "INVALID_KEY", "This application key is invalid");
        }
        if method == "POST" && path == "/auth/credential" {
            return self.credential(req);
        }
        if let Some(refusal) = self.authenticate(req, &method, &path) {
            return refusal;
        }
        if let Some(i) = self
            .faults
            .iter()
            .position(|f| f.times > 0 && f.method == method && path.starts_with(&f.path_prefix))
        {
            self.faults[i].times -= 1;
            let status = self.faults[i].status;
            return err(status, "Server::InternalServerError", "injected fault");
        }
        self.advance();
        let segs: Vec<String> = path
            .trim_start_matches('/')
            .split('/')
            .map(percent_decode)
            .collect();
        let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
        let body = if req.body.is_empty() {
            Value::Null
        } else {
            match serde_json::from_slice(&req.body) {
                Ok(v) => v,
                Err(_) => return bad("Invalid JSON body"),
            }
        };
        match (method.as_str(), segs.as_slice()) {
            ("POST", ["order", "cart"]) => self.new_cart(&body),
            (_, ["order", "cart", cart, rest @ ..]) => {
                let cart = cart.to_string();
                self.cart_call(&method, &cart, rest, req, &body)
            }
            ("GET", ["me", "order"]) => self.list_orders(req),
            ("GET", ["me", "order", id, rest @ ..]) => match id.parse::<u64>() {
                Ok(id) => self.order_call(id, rest),
                Err(_) => bad("orderId must be a number"),
            },
            ("GET", ["dedicated", "server"]) => ok(json!(self.servers.keys().collect::<Vec<_>>())),
            ("GET", ["dedicated", "server", name]) => match self.servers.get(*name) {
                Some(s) => ok(s.clone()),
                None => not_found(&format!("serviceName = {name}")),
            },
            ("GET", ["ip"]) => ok(json!(self.ips.keys().collect::<Vec<_>>())),
            (_, ["ip", block, rest @ ..]) => {
                let block = block.to_string();
                self.ip_call(&method, &block, rest, &body)
            }
            _ => err(
                404,
                "Client::NotFound",
                format!("No route for {method} {path}"),
            ),
        }
    }

    fn credential(&mut self, req: &Request) -> Answer {
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        let Some(rules) = body["accessRules"].as_array() else {
            return bad("accessRules is required");
        };
        let mut parsed = Vec::new();
        for r in rules {
            match (r["method"].as_str(), r["path"].as_str()) {
                (Some(m), Some(p))
                    if ["GET", "POST", "PUT", "DELETE"].contains(&m) && p.starts_with('/') =>
                {
                    parsed.push((m.to_string(), p.to_string()))
                }
                _ => return bad(format!("invalid access rule {r}")),
            }
        }
        let key = format!("emu-ck-{}", self.id());
        self.consumers.insert(
            key.clone(),
            Consumer {
                state: "pendingValidation".into(),
                rules: parsed,
            },
        );
        ok(json!({"consumerKey": key, "state": "pendingValidation",
                  "validationUrl": format!("{}/auth/?credentialToken=tok-{key}", self.host)}))
    }

    fn authenticate(&self, req: &Request, method: &str, path: &str) -> Option<Answer> {
        let (Some(ck), Some(ts), Some(sig)) = (
            req.header("X-Ovh-Consumer"),
            req.header("X-Ovh-Timestamp"),
            req.header("X-Ovh-Signature"),
        ) else {
            return Some(auth_err(
                403,
                "INVALID_CREDENTIAL",
                "This call requires a consumer key",
            ));
        };
        let Some(consumer) = self.consumers.get(ck) else {
            return Some(auth_err(
                403,
                "INVALID_CREDENTIAL",
                "This credential does not exist",
            ));
        };
        let Ok(ts) = ts.parse::<i64>() else {
            return Some(auth_err(400, "INVALID_SIGNATURE", "Invalid timestamp"));
        };
        if (ts - self.now()).abs() > TIMESTAMP_WINDOW {
            return Some(auth_err(400, "QUERY_TIME_OUT", "Query out of time"));
        }
        let full_url = format!("{}{}", self.host, req.target);
        let mut h = Sha1::new();
        h.update(format!("{APP_SECRET}+{ck}+{method}+{full_url}+").as_bytes());
        h.update(&req.body);
        h.update(format!("+{ts}").as_bytes());
        if sig != format!("$1${}", hex::encode(h.finalize())) {
            return Some(auth_err(400, "INVALID_SIGNATURE", "Invalid signature"));
        }
        if consumer.state != "validated" {
            return Some(auth_err(
                403,
                "INVALID_CREDENTIAL",
                "This credential is not valid",
            ));
        }
        if !consumer
            .rules
            .iter()
            .any(|(m, p)| m == method && rule_matches(p, path))
        {
            return Some(auth_err(
                403,
                "NOT_GRANTED_CALL",
                "This call has not been granted",
            ));
        }
        None
    }

    /// Move orders along the accelerated clock; deliver what a delivered order bought.
    fn advance(&mut self) {
        let step = self.step.max(Duration::from_millis(1));
        let mut deliveries = Vec::new();
        for (id, o) in &self.orders {
            let stage = o.created.elapsed().as_millis() / step.as_millis();
            if o.forced.is_none() && stage >= 2 && !o.delivered {
                deliveries.push(*id);
            }
        }
        for id in deliveries {
            let n = self.servers.len() + 10;
            let Some(order) = self.orders.get(&id) else {
                continue;
            };
            let mut domains = Vec::new();
            let mut new_servers = Vec::new();
            let mut new_ips = Vec::new();
            let mut server_name = None;
            for item in &order.items {
                match item.product.as_str() {
                    "baremetalServers" => {
                        let name = format!("ns{}.ip-203-0-113.eu", 3_000_000 + id);
                        let ip = format!("203.0.113.{n}");
                        let dc = item
                            .config
                            .get("dedicated_datacenter")
                            .cloned()
                            .unwrap_or_default();
                        new_servers.push((name.clone(), ip, dc));
                        domains.push(name.clone());
                        server_name = Some(name);
                    }
                    "ip" => {
                        let block = format!("198.51.100.{}/30", (n * 4) % 256);
                        domains.push(block.clone());
                        new_ips.push(block);
                    }
                    _ => {}
                }
            }
            for (name, ip, dc) in new_servers {
                self.servers
                    .insert(name.clone(), server_json(&name, &ip, &dc));
                self.ips.insert(format!("{ip}/32"), Some(name));
            }
            for block in new_ips {
                self.ips.insert(block, server_name.clone());
            }
            if let Some(o) = self.orders.get_mut(&id) {
                o.delivered = true;
                o.domains = domains;
            }
        }
    }

    fn order_status(&self, o: &Order) -> String {
        if let Some(f) = &o.forced {
            return f.clone();
        }
        let stage =
            o.created.elapsed().as_millis() / self.step.max(Duration::from_millis(1)).as_millis();
        match stage {
            0 => "checking",
            1 => "delivering",
            _ => "delivered",
        }
        .into()
    }

    fn new_cart(&mut self, body: &Value) -> Answer {
        let Some(sub) = body["ovhSubsidiary"].as_str() else {
            return bad("ovhSubsidiary is required");
        };
        if sub.len() != 2 {
            return bad(format!("Invalid ovhSubsidiary {sub}"));
        }
        let id = format!("emu-cart-{}", self.id());
        self.carts.insert(
            id.clone(),
            Cart {
                subsidiary: sub.into(),
                assigned: false,
                checked_out: false,
                items: Vec::new(),
            },
        );
        ok(
            json!({"cartId": id, "description": body["description"], "expire": "2099-01-01T00:00:00+00:00",
                  "items": [], "readOnly": false}),
        )
    }

    fn offer(&self, plan: &str) -> Option<&Offer> {
        self.offers.iter().find(|o| o.plan_code == plan)
    }

    fn offer_json(&self, o: &Offer) -> Value {
        let prices: Vec<Value> = o
            .durations
            .iter()
            .map(|d| json!({"duration": d, "pricingMode": "default", "price": price(o.price), "priceInUcents": (o.price * 1e8) as u64}))
            .collect();
        json!({"planCode": o.plan_code, "productName": o.product_name, "productType": "delivery", "prices": prices})
    }

    fn cart_call(
        &mut self,
        method: &str,
        cart_id: &str,
        rest: &[&str],
        req: &Request,
        body: &Value,
    ) -> Answer {
        let Some(cart) = self.carts.get(cart_id) else {
            return not_found(&format!("cartId = {cart_id}"));
        };
        if cart.checked_out && method != "GET" {
            return err(
                403,
                "Client::Forbidden",
                "This cart is read-only: it was checked out",
            );
        }
        match (method, rest) {
            ("GET", []) => ok(
                json!({"cartId": cart_id, "items": cart.items.iter().map(|i| i.id).collect::<Vec<_>>(),
                                     "readOnly": cart.checked_out}),
            ),
            ("POST", ["assign"]) => {
                if let Some(c) = self.carts.get_mut(cart_id) {
                    c.assigned = true;
                }
                ok(Value::Null)
            }
            ("GET", ["baremetalServers"]) => ok(json!(self
                .offers
                .iter()
                .map(|o| self.offer_json(o))
                .collect::<Vec<_>>())),
            ("POST", ["baremetalServers"]) => {
                let plan = body["planCode"].as_str().unwrap_or_default();
                let Some(offer) = self.offer(plan) else {
                    return bad(format!("Offer {plan:?} does not exist"));
                };
                let duration = body["duration"].as_str().unwrap_or_default().to_string();
                if !offer.durations.contains(&duration) {
                    return bad(format!("Duration {duration:?} is not available for {plan}"));
                }
                if body["pricingMode"].as_str() != Some("default") {
                    return bad("pricingMode must be one of the offer's pricing modes: default");
                }
                let price = offer.price;
                let item = Item {
                    id: self.id(),
                    product: "baremetalServers".into(),
                    plan_code: plan.into(),
                    duration,
                    price,
                    parent: None,
                    config: BTreeMap::new(),
                };
                self.add_item(cart_id, item)
            }
            ("GET", ["baremetalServers", "options"]) => {
                let plan = query_param(req, "planCode").unwrap_or_default();
                let Some(offer) = self.offer(&plan) else {
                    return bad(format!("Offer {plan:?} does not exist"));
                };
                ok(json!(offer
                    .options
                    .iter()
                    .map(
                        |(p, v)| json!({"planCode": p, "family": "option", "productName": p,
                    "prices": [{"duration": "P1M", "pricingMode": "default", "price": price(*v)}]})
                    )
                    .collect::<Vec<_>>()))
            }
            ("POST", ["baremetalServers", "options"]) => {
                let item_id = body["itemId"].as_u64().unwrap_or_default();
                let Some(parent) = cart
                    .items
                    .iter()
                    .find(|i| i.id == item_id && i.product == "baremetalServers")
                else {
                    return bad(format!("Item {item_id} is not a server of this cart"));
                };
                let plan = body["planCode"].as_str().unwrap_or_default();
                let Some((_, v)) = self
                    .offer(&parent.plan_code)
                    .and_then(|o| o.options.iter().find(|(p, _)| p == plan))
                else {
                    return bad(format!("Option {plan:?} is not available for this offer"));
                };
                let (v, duration) = (*v, parent.duration.clone());
                let item = Item {
                    id: self.id(),
                    product: "option".into(),
                    plan_code: plan.into(),
                    duration,
                    price: v,
                    parent: Some(item_id),
                    config: BTreeMap::new(),
                };
                self.add_item(cart_id, item)
            }
            ("GET", ["ip"]) => ok(json!(self
                .ip_offers
                .iter()
                .map(
                    |(p, v)| json!({"planCode": p, "productName": p, "productType": "delivery",
                "prices": [{"duration": "P1M", "pricingMode": "default", "price": price(*v)}]})
                )
                .collect::<Vec<_>>())),
            ("POST", ["ip"]) => {
                let plan = body["planCode"].as_str().unwrap_or_default();
                let Some((_, v)) = self.ip_offers.iter().find(|(p, _)| p == plan) else {
                    return bad(format!("Offer {plan:?} does not exist"));
                };
                let v = *v;
                let item = Item {
                    id: self.id(),
                    product: "ip".into(),
                    plan_code: plan.into(),
                    duration: body["duration"].as_str().unwrap_or("P1M").into(),
                    price: v,
                    parent: None,
                    config: BTreeMap::new(),
                };
                self.add_item(cart_id, item)
            }
            ("GET", ["item", id, "requiredConfiguration"]) => match self.item(cart_id, id) {
                Some(item) => ok(json!(self
                    .required(&item)
                    .into_iter()
                    .map(|(label, allowed)| {
                        let mut v = json!({"label": label, "required": true, "type": "string"});
                        if let Some(a) = allowed {
                            v["allowedValues"] = json!(a);
                        }
                        v
                    })
                    .collect::<Vec<_>>())),
                None => not_found(&format!("itemId = {id}")),
            },
            ("POST", ["item", id, "configuration"]) => {
                let Some(item) = self.item(cart_id, id) else {
                    return not_found(&format!("itemId = {id}"));
                };
                let (Some(label), Some(value)) = (body["label"].as_str(), body["value"].as_str())
                else {
                    return bad("label and value are required");
                };
                let Some((_, allowed)) = self.required(&item).into_iter().find(|(l, _)| l == label)
                else {
                    return bad(format!(
                        "Configuration {label:?} does not apply to this item"
                    ));
                };
                if let Some(allowed) = allowed {
                    if !allowed.iter().any(|a| a == value) {
                        return bad(format!(
                            "Value {value:?} is not allowed for {label}: allowed values are {}",
                            allowed.join(", ")
                        ));
                    }
                }
                let cid = self.id();
                if let Some(i) = self
                    .carts
                    .get_mut(cart_id)
                    .and_then(|c| c.items.iter_mut().find(|i| i.id == item.id))
                {
                    i.config.insert(label.into(), value.into());
                }
                ok(json!({"id": cid, "label": label, "value": value}))
            }
            ("GET", ["checkout"]) => self.preview(cart_id).map_or_else(|e| e, ok),
            ("POST", ["checkout"]) => {
                let preview = match self.preview(cart_id) {
                    Ok(v) => v,
                    Err(e) => return e,
                };
                if self.checkout_503 > 0 {
                    self.checkout_503 -= 1;
                    return err(
                        503,
                        "Server::ServiceUnavailable",
                        "The service is temporarily unavailable",
                    );
                }
                let id = self.id();
                let items = self
                    .carts
                    .get(cart_id)
                    .map(|c| c.items.clone())
                    .unwrap_or_default();
                if let Some(c) = self.carts.get_mut(cart_id) {
                    c.checked_out = true;
                }
                let date = chrono::DateTime::from_timestamp(self.now(), 0)
                    .unwrap_or_default()
                    .to_rfc3339();
                self.orders.insert(
                    id,
                    Order {
                        created: Instant::now(),
                        date,
                        items,
                        forced: None,
                        delivered: false,
                        domains: Vec::new(),
                        unlisted_for: std::mem::take(&mut self.checkout_unlisted),
                    },
                );
                if self.checkout_commit_then_503 > 0 {
                    self.checkout_commit_then_503 -= 1;
                    return err(
                        503,
                        "Server::ServiceUnavailable",
                        "The service is temporarily unavailable",
                    );
                }
                let mut order = preview;
                order["orderId"] = json!(id);
                order["url"] = json!(format!(
                    "https://www.ovh.ie/cgi-bin/order/display-order.cgi?orderId={id}"
                ));
                ok(order)
            }
            _ => err(
                404,
                "Client::NotFound",
                format!(
                    "No route for {method} /order/cart/{cart_id}/{}",
                    rest.join("/")
                ),
            ),
        }
    }

    fn add_item(&mut self, cart_id: &str, item: Item) -> Answer {
        let v = json!({"itemId": item.id, "cartId": cart_id, "productId": item.product, "duration": item.duration,
                       "prices": [{"label": "TOTAL", "price": price(item.price)}], "settings": {"planCode": item.plan_code, "quantity": 1}});
        if let Some(c) = self.carts.get_mut(cart_id) {
            c.items.push(item);
        }
        ok(v)
    }

    fn item(&self, cart_id: &str, id: &str) -> Option<Item> {
        let id: u64 = id.parse().ok()?;
        self.carts
            .get(cart_id)?
            .items
            .iter()
            .find(|i| i.id == id)
            .cloned()
    }

    /// The required configurations of an item and their allowed values.
    fn required(&self, item: &Item) -> Vec<(String, Option<Vec<String>>)> {
        match item.product.as_str() {
            "baremetalServers" => match self.offer(&item.plan_code) {
                Some(o) => vec![
                    ("dedicated_datacenter".into(), Some(o.datacenters.clone())),
                    ("dedicated_os".into(), Some(o.os.clone())),
                    ("region".into(), Some(o.regions.clone())),
                ],
                None => Vec::new(),
            },
            "ip" => vec![
                (
                    "country".into(),
                    Some(vec!["IE".into(), "FR".into(), "GB".into(), "DE".into()]),
                ),
                ("region".into(), Some(vec!["europe".into()])),
            ],
            _ => Vec::new(),
        }
    }

    fn preview(&self, cart_id: &str) -> Result<Value, Answer> {
        let Some(cart) = self.carts.get(cart_id) else {
            return Err(not_found(&format!("cartId = {cart_id}")));
        };
        if !cart.assigned {
            return Err(err(
                403,
                "Client::Forbidden",
                "This cart is not assigned to your account",
            ));
        }
        if cart.items.is_empty() {
            return Err(bad("The cart is empty"));
        }
        for item in &cart.items {
            for (label, _) in self.required(item) {
                if !item.config.contains_key(&label) {
                    return Err(bad(format!(
                        "Missing required configuration {label} for item {}",
                        item.id
                    )));
                }
            }
        }
        let total: f64 = cart.items.iter().map(|i| i.price).sum();
        let tax_rate = if cart.subsidiary == "IE" { 0.23 } else { 0.20 };
        let tax = (total * tax_rate * 100.0).round() / 100.0;
        let details: Vec<Value> = cart
            .items
            .iter()
            .map(|i| json!({"description": format!("{} {} ({})", i.product, i.plan_code, i.duration), "detailType": "DURATION",
                            "domain": "*", "quantity": 1, "totalPrice": price(i.price), "unitPrice": price(i.price),
                            "parent": i.parent}))
            .collect();
        Ok(json!({"orderId": null, "url": null, "details": details,
                  "prices": {"withoutTax": price(total), "tax": price(tax), "withTax": price(total + tax)},
                  "contracts": [{"name": "General terms and conditions", "url": "https://www.ovh.ie/support/termsofservice/", "content": "…"},
                                {"name": "Dedicated server conditions", "url": "https://www.ovh.ie/support/termsofservice/dedicated.pdf", "content": "…"}]}))
    }

    fn list_orders(&mut self, req: &Request) -> Answer {
        let parse = |k: &str| {
            query_param(req, k)
                .map(|v| chrono::DateTime::parse_from_rfc3339(&v).map(|d| d.timestamp()))
        };
        let (from, to) = match (parse("date.from").transpose(), parse("date.to").transpose()) {
            (Ok(f), Ok(t)) => (f, t),
            _ => return bad("date.from and date.to must be ISO 8601 dates"),
        };
        let mut ids = Vec::new();
        for (id, o) in self.orders.iter_mut() {
            if o.unlisted_for > 0 {
                o.unlisted_for -= 1;
                continue;
            }
            let t = chrono::DateTime::parse_from_rfc3339(&o.date)
                .map(|d| d.timestamp())
                .unwrap_or(0);
            if from.is_none_or(|f| t >= f) && to.is_none_or(|e| t <= e) {
                ids.push(*id);
            }
        }
        ok(json!(ids))
    }

    fn order_call(&self, id: u64, rest: &[&str]) -> Answer {
        let Some(o) = self.orders.get(&id) else {
            return not_found(&format!("orderId = {id}"));
        };
        let total: f64 = o.items.iter().map(|i| i.price).sum();
        match rest {
            [] => ok(
                json!({"orderId": id, "date": o.date, "expirationDate": null,
                            "url": format!("https://www.ovh.ie/cgi-bin/order/display-order.cgi?orderId={id}"),
                            "priceWithoutTax": price(total), "priceWithTax": price(total * 1.23), "tax": price(total * 0.23)}),
            ),
            ["status"] => ok(json!(self.order_status(o))),
            ["details"] => ok(json!((1..=o.items.len() as u64)
                .map(|d| id * 100 + d)
                .collect::<Vec<_>>())),
            ["details", d] => {
                let index = d
                    .parse::<u64>()
                    .ok()
                    .and_then(|d| d.checked_sub(id * 100 + 1))
                    .map(|i| i as usize);
                match index.and_then(|i| o.items.get(i).map(|item| (i, item))) {
                    Some((i, item)) => ok(json!({"orderDetailId": id * 100 + 1 + i as u64,
                        "description": format!("{} {}", item.product, item.plan_code), "quantity": "1",
                        "domain": o.domains.get(i).cloned().unwrap_or_else(|| "*".into())})),
                    None => not_found(&format!("orderDetailId = {d}")),
                }
            }
            _ => not_found("route"),
        }
    }

    fn ip_call(&mut self, method: &str, block: &str, rest: &[&str], body: &Value) -> Answer {
        let Some(routed) = self.ips.get(block).cloned() else {
            return not_found(&format!("ip = {block}"));
        };
        match (method, rest) {
            ("GET", []) => ok(
                json!({"ip": block, "type": if routed.is_some() { "failover" } else { "dedicated" },
                                     "routedTo": {"serviceName": routed}}),
            ),
            ("POST", ["move"]) => {
                let Some(to) = body["to"].as_str() else {
                    return bad("to is required");
                };
                if !self.servers.contains_key(to) {
                    return bad(format!("{to} is not a server of this account"));
                }
                if self
                    .tasks
                    .values()
                    .any(|t| t.ip == block && t.created.elapsed() < self.step)
                {
                    return err(
                        409,
                        "Client::Conflict",
                        "A move of this IP is already in progress",
                    );
                }
                let id = self.id();
                self.tasks.insert(
                    id,
                    Task {
                        ip: block.into(),
                        to: to.into(),
                        created: Instant::now(),
                    },
                );
                ok(
                    json!({"taskId": id, "function": "genericMoveFloatingIp", "status": "init", "destination": to}),
                )
            }
            ("GET", ["task", id]) => {
                let Some((id, task)) = id
                    .parse::<u64>()
                    .ok()
                    .and_then(|id| self.tasks.get(&id).map(|t| (id, t)))
                else {
                    return not_found(&format!("taskId = {id}"));
                };
                let status = if task.created.elapsed() < self.step / 2 {
                    "todo"
                } else if task.created.elapsed() < self.step {
                    "doing"
                } else {
                    "done"
                };
                if status == "done" {
                    let to = task.to.clone();
                    self.ips.insert(block.into(), Some(to));
                }
                ok(json!({"taskId": id, "function": "genericMoveFloatingIp", "status": status}))
            }
            ("GET", ["firewall"]) => ok(json!(self
                .firewalls
                .keys()
                .filter(|(b, _)| b == block)
                .map(|(_, i)| i)
                .collect::<Vec<_>>())),
            ("POST", ["firewall"]) => {
                let Some(on) = body["ipOnFirewall"].as_str() else {
                    return bad("ipOnFirewall is required");
                };
                let key = (block.to_string(), on.to_string());
                if self.firewalls.contains_key(&key) {
                    return err(
                        409,
                        "Client::Conflict",
                        format!("{on} is already on the firewall"),
                    );
                }
                self.firewalls.insert(
                    key,
                    Firewall {
                        enabled: false,
                        rules: BTreeMap::new(),
                    },
                );
                ok(json!({"ipOnFirewall": on, "enabled": false, "state": "ok"}))
            }
            (_, ["firewall", on, fw_rest @ ..]) => {
                let key = (block.to_string(), on.to_string());
                let Some(fw) = self.firewalls.get_mut(&key) else {
                    return not_found(&format!("ipOnFirewall = {on}"));
                };
                firewall_call(fw, method, on, fw_rest, body)
            }
            _ => not_found("route"),
        }
    }
}

fn firewall_call(fw: &mut Firewall, method: &str, on: &str, rest: &[&str], body: &Value) -> Answer {
    match (method, rest) {
        ("GET", []) => ok(json!({"ipOnFirewall": on, "enabled": fw.enabled, "state": "ok"})),
        ("PUT", []) => match body["enabled"].as_bool() {
            Some(e) => {
                fw.enabled = e;
                ok(Value::Null)
            }
            None => bad("enabled must be a boolean"),
        },
        ("GET", ["rule"]) => ok(json!(fw.rules.keys().collect::<Vec<_>>())),
        ("POST", ["rule"]) => {
            let Some(seq) = body["sequence"].as_u64() else {
                return bad("sequence is required");
            };
            if seq > 19 {
                return bad(format!(
                    "sequence {seq} is out of range 0..19: at most 20 rules per IP"
                ));
            }
            if fw.rules.contains_key(&seq) {
                return err(
                    409,
                    "Client::Conflict",
                    format!("A rule with sequence {seq} already exists"),
                );
            }
            let action = body["action"].as_str().unwrap_or_default();
            if !["permit", "deny"].contains(&action) {
                return bad(format!("action {action:?} must be permit or deny"));
            }
            let protocol = body["protocol"].as_str().unwrap_or_default();
            if !["ah", "esp", "gre", "icmp", "ipv4", "tcp", "udp"].contains(&protocol) {
                return bad(format!(
                    "protocol {protocol:?} is not one of ah, esp, gre, icmp, ipv4, tcp, udp"
                ));
            }
            let source = body["source"].as_str();
            if source.is_some_and(|s| !valid_ipv4_cidr(s)) {
                return bad(format!("source {} is not an IPv4 block", body["source"]));
            }
            let port = body.get("destinationPort").filter(|v| !v.is_null());
            if port.is_some() && !["tcp", "udp"].contains(&protocol) {
                return bad("destinationPort needs protocol tcp or udp");
            }
            let port = match port.map(|p| p.as_u64().filter(|n| *n <= 65535)) {
                Some(None) => return bad("destinationPort must be a port number"),
                Some(Some(n)) => Some(n),
                None => None,
            };
            let tcp_option = body["tcpOption"]["option"].as_str();
            if tcp_option.is_some() && protocol != "tcp" {
                return bad("tcpOption needs protocol tcp");
            }
            let rule = json!({"sequence": seq, "action": action, "protocol": protocol,
                              "source": source.map(|s| if s.contains('/') { s.to_string() } else { format!("{s}/32") }),
                              "destinationPort": port.map(|p| format!("eq {p}")), "tcpOption": tcp_option,
                              "state": "ok", "creationDate": "2025-01-01T00:00:00+00:00"});
            fw.rules.insert(seq, rule.clone());
            ok(rule)
        }
        ("GET", ["rule", seq]) => match seq.parse::<u64>().ok().and_then(|s| fw.rules.get(&s)) {
            Some(r) => ok(r.clone()),
            None => not_found(&format!("sequence = {seq}")),
        },
        ("DELETE", ["rule", seq]) => {
            match seq.parse::<u64>().ok().and_then(|s| fw.rules.remove(&s)) {
                Some(_) => ok(Value::Null),
                None => not_found(&format!("sequence = {seq}")),
            }
        }
        _ => not_found("route"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_rules_match_with_wildcards() {
        assert!(rule_matches("/order/*", "/order/cart/x/checkout"));
        assert!(rule_matches("/me/order", "/me/order"));
        assert!(!rule_matches("/me/order/*", "/me/order"));
        assert!(rule_matches("/*", "/ip"));
        assert!(!rule_matches("/ip/*", "/dedicated/server"));
    }

    #[test]
    fn percent_decoding_of_ip_blocks() {
        assert_eq!(percent_decode("1.2.3.4%2F30"), "1.2.3.4/30");
        assert_eq!(percent_decode("100%"), "100%");
    }
}
