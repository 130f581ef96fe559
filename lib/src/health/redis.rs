//! The Redis probe, in RESP by hand: `AUTH` when a password is configured, then `PING`,
//! which must answer `+PONG`. A PING answered proves the server reads commands, not just
//! that its port is open (a loading or misconfigured server answers with an error).

use std::io::{Read, Write};
use std::net::TcpStream;

use super::net::{self, Clock};
use super::{secret, CheckSpec, ProbeContext, Verdict};

fn command(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Send one command and read its one-line reply (`+OK`, `-ERR …`).
fn call(stream: &mut TcpStream, clock: &Clock, args: &[&str]) -> Result<String, String> {
    let phase = format!(
        "waiting for the {} reply",
        args.first().copied().unwrap_or("")
    );
    let left = clock.remaining(&phase)?;
    stream
        .set_write_timeout(Some(left))
        .map_err(|e| format!("socket: {e}"))?;
    stream
        .write_all(&command(args))
        .map_err(|e| format!("sending to redis failed: {e}"))?;
    let mut line = Vec::new();
    loop {
        if let Some(i) = line.windows(2).position(|w| w == b"\r\n") {
            line.truncate(i);
            return Ok(String::from_utf8_lossy(&line).into_owned());
        }
        if line.len() > 4096 {
            return Err("reply line too long: is this a redis server?".into());
        }
        let left = clock.remaining(&phase)?;
        stream
            .set_read_timeout(Some(left))
            .map_err(|e| format!("socket: {e}"))?;
        let mut chunk = [0u8; 512];
        match stream.read(&mut chunk) {
            Ok(0) => return Err("connection closed without a reply".into()),
            Ok(n) => line.extend_from_slice(&chunk[..n]),
            Err(e) if net::is_timeout(&e) => return Err(clock.timed_out(&phase)),
            Err(e) => return Err(format!("reading from redis failed: {e}")),
        }
    }
}

fn is_auth_error(reply: &str) -> bool {
    [
        "-NOAUTH",
        "-WRONGPASS",
        "-ERR invalid password",
        "-ERR AUTH",
    ]
    .iter()
    .any(|p| reply.starts_with(p))
}

pub(super) fn probe(spec: &CheckSpec, ctx: &ProbeContext) -> Verdict {
    let clock = Clock::new(ctx.timeout);
    let password = match spec.password_secret.as_deref().map(secret).transpose() {
        Ok(p) => p,
        Err(e) => return Verdict::unknown(e),
    };
    let address = spec.address.as_deref().unwrap_or("");
    let mut stream = match net::connect_address(address, &clock) {
        Ok(s) => s,
        Err(e) => return Verdict::critical(e),
    };
    let connect_ms = clock.elapsed_ms();
    let mut v = talk(&mut stream, &clock, password.as_ref().map(|p| p.expose()));
    let total_ms = clock.elapsed_ms();
    if v.status == super::Status::Ok {
        v.summary = format!("PONG in {total_ms:.0} ms");
        v.judge_time(spec, "PING", total_ms);
    }
    // Polite goodbye; the answer does not matter.
    let _ = stream.write_all(&command(&["QUIT"]));
    v.metric("connect_ms", connect_ms)
        .metric("response_ms", total_ms)
}

fn talk(stream: &mut TcpStream, clock: &Clock, password: Option<&str>) -> Verdict {
    if let Some(pw) = password {
        match call(stream, clock, &["AUTH", pw]) {
            Err(e) => return Verdict::critical(e),
            Ok(r) if r == "+OK" => {}
            // The server's reply names the problem but never echoes the password.
            Ok(r) => {
                return Verdict::critical(format!(
                    "authentication failed: {}",
                    r.trim_start_matches('-')
                ))
            }
        }
    }
    match call(stream, clock, &["PING"]) {
        Err(e) => Verdict::critical(e),
        Ok(r) if r == "+PONG" => Verdict::ok(""),
        Ok(r) if is_auth_error(&r) => Verdict::critical(format!(
            "authentication failed: {} (set password_secret)",
            r.trim_start_matches('-')
        )),
        Ok(r) => Verdict::critical(format!("PING answered {r:?}, expected +PONG")),
    }
}
