//! `status`: the account's servers and IPs, and the recorded orders with their status.

use pimops::output::Record;
use pimops::ovh::escape;
use pimops::Result;
use serde_json::Value;

use crate::session::Session;
use crate::state::State;

pub fn run(s: &mut Session) -> Result<u8> {
    let servers: Vec<String> = s.client.get("/dedicated/server")?;
    for name in servers {
        let d: Value = s
            .client
            .get(&format!("/dedicated/server/{}", escape(&name)))?;
        let rec = Record::new("server")
            .with("name", name.clone())
            .with("ip", d["ip"].clone())
            .with("datacenter", d["datacenter"].clone())
            .with("state", d["state"].clone());
        s.out.emit(&rec, |r| {
            format!(
                "server {name}: {} ip {} in {}",
                text(r, "state"),
                text(r, "ip"),
                text(r, "datacenter")
            )
        })?;
    }
    let ips: Vec<String> = s.client.get("/ip")?;
    for ip in ips {
        let d: Value = s.client.get(&format!("/ip/{}", escape(&ip)))?;
        let rec = Record::new("ip")
            .with("ip", ip.clone())
            .with("routed_to", d["routedTo"]["serviceName"].clone());
        s.out.emit(&rec, |r| {
            format!("ip {ip}: routed to {}", text(r, "routed_to"))
        })?;
    }
    let st = State::load(&s.state_path)?;
    for o in &st.orders {
        let status: String = s.client.get(&format!("/me/order/{}/status", o.order_id))?;
        let rec = crate::order::order_record(o).with("status", status.clone());
        s.out.emit(&rec, |_| {
            format!(
                "order {} ({}, {}): {status}",
                o.order_id, o.kind, o.price_with_tax
            )
        })?;
    }
    Ok(0)
}

fn text(r: &Record, key: &str) -> String {
    match r.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => "-".into(),
        Some(v) => v.to_string(),
    }
}
