//! The TCP probe: connect within the timeout; optionally send a line and wait for an
//! expected substring (a poor man's protocol check for anything that greets or echoes).

use std::io::{Read, Write};

use super::net::{self, Clock};
use super::{CheckSpec, ProbeContext, Status, Verdict};

/// Enough of a greeting or reply to find the expected text in.
const READ_CAP: usize = 64 << 10;

pub(super) fn probe(spec: &CheckSpec, ctx: &ProbeContext) -> Verdict {
    let clock = Clock::new(ctx.timeout);
    let address = spec.address.as_deref().unwrap_or("");
    let mut stream = match net::connect_address(address, &clock) {
        Ok(s) => s,
        Err(e) => return Verdict::critical(e),
    };
    let connect_ms = clock.elapsed_ms();
    if let Some(data) = &spec.send {
        let sent = clock
            .remaining("sending")
            .and_then(|left| {
                stream
                    .set_write_timeout(Some(left))
                    .map_err(|e| e.to_string())
            })
            .and_then(|()| {
                stream
                    .write_all(data.as_bytes())
                    .map_err(|e| format!("sending to {address} failed: {e}"))
            });
        if let Err(e) = sent {
            return Verdict::critical(e).metric("connect_ms", connect_ms);
        }
    }
    let Some(expect) = &spec.expect else {
        let mut v = Verdict::ok(format!("connected to {address} in {connect_ms:.0} ms"))
            .metric("connect_ms", connect_ms);
        v.judge_time(spec, "connect", connect_ms);
        return v;
    };
    let mut got = Vec::new();
    let phase = format!("waiting for {expect:?}");
    let found = loop {
        if String::from_utf8_lossy(&got).contains(expect.as_str()) {
            break Ok(());
        }
        if got.len() >= READ_CAP {
            break Err(format!("{expect:?} not in the first {READ_CAP} bytes"));
        }
        let left = match clock.remaining(&phase) {
            Ok(l) => l,
            Err(e) => break Err(e),
        };
        if let Err(e) = stream.set_read_timeout(Some(left)) {
            break Err(format!("socket: {e}"));
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk) {
            Ok(0) => break Err(format!("connection closed before {expect:?} arrived")),
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e) if net::is_timeout(&e) => break Err(clock.timed_out(&phase)),
            Err(e) => break Err(format!("reading from {address} failed: {e}")),
        }
    };
    let total_ms = clock.elapsed_ms();
    let mut v = match found {
        Ok(()) => Verdict::ok(format!("{address} answered {expect:?} in {total_ms:.0} ms")),
        Err(e) => {
            let seen = String::from_utf8_lossy(&got);
            let seen: String = seen.chars().take(80).collect();
            Verdict::critical(format!("{e} (received {seen:?})"))
        }
    };
    if v.status == Status::Ok {
        v.judge_time(spec, "answer", total_ms);
    }
    v.metric("connect_ms", connect_ms)
        .metric("response_ms", total_ms)
}
