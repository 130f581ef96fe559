//! `wait`: follow an order to delivery, then print the delivered server.

use std::time::Instant;

use pimops::output::Record;
use pimops::ovh::escape;
use pimops::{Error, Result};
use serde_json::Value;

use crate::args::WaitArgs;
use crate::session::Session;
use crate::state::State;

/// Statuses that will never become `delivered`.
const FAILED: &[&str] = &["cancelled", "cancelling", "notPaid"];

pub fn run(s: &mut Session, args: &WaitArgs) -> Result<u8> {
    let mut st = State::load(&s.state_path)?;
    let id = match args.order {
        Some(id) => id,
        None => st.last(None).map(|o| o.order_id).ok_or_else(|| {
            Error::usage(format!(
                "no order recorded in {}: name the ORDER to wait for",
                s.state_path.display()
            ))
        })?,
    };
    let interval = args.interval.unwrap_or(s.ovh.poll_interval).std();
    let start = Instant::now();
    let bar = pimops::output::progress_bar(None, &format!("order {id}"));
    let mut last = String::new();
    loop {
        let status: String = s.client.get(&format!("/me/order/{id}/status"))?;
        if status != last {
            bar.set_message(format!("order {id}: {status}"));
            let rec = Record::new("status")
                .with("order_id", id)
                .with("status", status.clone())
                .with("elapsed_s", start.elapsed().as_secs());
            // Status changes go to stderr (JSON lines with --json or in a pipe) so stdout
            // carries only the delivered server: `ovh-order wait --json | jq -r .ip`.
            let line = if s.out.is_json() {
                rec.to_json_line()
            } else {
                format!("order {id}: {status}")
            };
            bar.suspend(|| eprintln!("{line}"));
            if status == "documentsRequested" {
                log::warn!("OVH asks for documents before delivering order {id}: see the order in the OVH manager");
            }
            last = status.clone();
        }
        if status == "delivered" {
            break;
        }
        if FAILED.contains(&status.as_str()) {
            bar.finish_and_clear();
            return Err(Error::failed(format!(
                "order {id} is {status}: it will not be delivered"
            )));
        }
        if let Some(t) = args.timeout {
            if start.elapsed() + interval > t.std() {
                bar.finish_and_clear();
                return Err(Error::temporary(format!(
                    "order {id} is still {status} after {}: run `ovh-order wait {id}` again later",
                    pimops::units::Duration(start.elapsed())
                )));
            }
        }
        bar.tick();
        std::thread::sleep(interval);
    }
    bar.finish_and_clear();

    let services = delivered_services(s, id)?;
    let mut server_name = None;
    for name in &services {
        if name == "*" || name.contains('/') {
            continue;
        }
        let Some(server) = s
            .client
            .get_opt::<Value>(&format!("/dedicated/server/{}", escape(name)))?
        else {
            continue;
        };
        let rec = Record::new("server")
            .with("order_id", id)
            .with("name", name.clone())
            .with("ip", server["ip"].clone())
            .with("datacenter", server["datacenter"].clone())
            .with("state", server["state"].clone());
        s.out.emit(&rec, |r| {
            format!(
                "delivered: {name} ip {} in {}",
                r.get("ip").and_then(Value::as_str).unwrap_or("?"),
                r.get("datacenter").and_then(Value::as_str).unwrap_or("?")
            )
        })?;
        server_name.get_or_insert_with(|| name.clone());
    }
    if server_name.is_none() {
        let rec = Record::new("delivered")
            .with("order_id", id)
            .with("services", services.clone());
        s.out
            .emit(&rec, |_| format!("delivered: {}", services.join(", ")))?;
    }
    if let Some(rec) = st.orders.iter_mut().find(|o| o.order_id == id) {
        rec.service = server_name.or_else(|| services.first().cloned());
        st.save(&s.state_path)?;
    }
    Ok(0)
}

/// The service names (`domain`) of the order's details.
fn delivered_services(s: &Session, id: u64) -> Result<Vec<String>> {
    let details: Vec<u64> = s.client.get(&format!("/me/order/{id}/details"))?;
    let mut out = Vec::new();
    for d in details {
        let detail: Value = s.client.get(&format!("/me/order/{id}/details/{d}"))?;
        if let Some(domain) = detail["domain"].as_str() {
            out.push(domain.to_string());
        }
    }
    Ok(out)
}
