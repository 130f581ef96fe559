//! `ip move`: route a block to a server and follow OVH's task.

use std::time::Instant;

use pimops::output::Record;
use pimops::ovh::escape;
use pimops::{Error, Result};
use serde_json::{json, Value};

use crate::args::MoveArgs;
use crate::session::Session;

/// A bare address is its /32 block.
pub fn block(ip: &str) -> String {
    if ip.contains('/') {
        ip.to_string()
    } else {
        format!("{ip}/32")
    }
}

pub fn move_ip(s: &mut Session, args: &MoveArgs) -> Result<u8> {
    let block = block(&args.ip);
    let base = format!("/ip/{}", escape(&block));
    let info: Value = s.client.get(&base)?;
    let emit_routed = |s: &mut Session, changed: bool| {
        let rec = Record::new("ip")
            .with("ip", block.clone())
            .with("routed_to", args.to.clone())
            .with("changed", changed);
        s.out.emit(&rec, |_| {
            format!(
                "{block} is routed to {}{}",
                args.to,
                if changed { "" } else { " (unchanged)" }
            )
        })
    };
    if info["routedTo"]["serviceName"].as_str() == Some(args.to.as_str()) {
        emit_routed(s, false)?;
        return Ok(0);
    }
    let task: Value = s
        .client
        .post(&format!("{base}/move"), Some(&json!({"to": args.to})))?;
    let task_id = task["taskId"]
        .as_u64()
        .ok_or_else(|| Error::failed(format!("OVH API POST {base}/move: no taskId in {task}")))?;
    let start = Instant::now();
    let mut last = String::new();
    loop {
        let t: Value = s.client.get(&format!("{base}/task/{task_id}"))?;
        let status = t["status"].as_str().unwrap_or("unknown").to_string();
        if status != last {
            let rec = Record::new("task")
                .with("task_id", task_id)
                .with("ip", block.clone())
                .with("status", status.clone());
            s.out.emit(&rec, |_| format!("task {task_id}: {status}"))?;
            last = status.clone();
        }
        match status.as_str() {
            "done" => break,
            "cancelled" | "customerError" | "ovhError" => {
                return Err(Error::failed(format!(
                    "moving {block} to {}: task {task_id} ended {status}",
                    args.to
                )))
            }
            _ => {}
        }
        if start.elapsed() + args.interval.std() > args.timeout.std() {
            return Err(Error::temporary(format!(
                "moving {block} to {}: task {task_id} still {status} after {}",
                args.to, args.timeout
            )));
        }
        std::thread::sleep(args.interval.std());
    }
    emit_routed(s, true)?;
    Ok(0)
}
