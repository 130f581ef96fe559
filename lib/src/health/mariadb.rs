//! The MariaDB probe, speaking the client protocol by hand over TCP or a unix socket.
//!
//! Two depths, because they prove different things:
//! - without `user`, the server's initial handshake packet is read: it proves the server
//!   process is up and accepting connections (and names its version), nothing more;
//! - with `user`, the probe authenticates (mysql_native_password, or unix_socket over the
//!   socket, where the server checks the OS user and asks for nothing) and runs `SELECT 1`:
//!   that proves the credentials are valid, a connection slot was free, and the server can
//!   parse and execute a query, i.e. it is not stuck in crash recovery or otherwise wedged
//!   behind a listening socket.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use sha1::{Digest, Sha1};

use super::net::{self, Clock};
use super::{secret, CheckSpec, ProbeContext, Status, Verdict};

const CLIENT_LONG_PASSWORD: u32 = 1;
const CLIENT_PROTOCOL_41: u32 = 1 << 9;
const CLIENT_TRANSACTIONS: u32 = 1 << 13;
const CLIENT_SECURE_CONNECTION: u32 = 1 << 15;
const CLIENT_PLUGIN_AUTH: u32 = 1 << 19;
const NATIVE: &str = "mysql_native_password";
/// Larger packets than this are not expected from a handshake or `SELECT 1`.
const PACKET_CAP: usize = 1 << 20;

trait Stream: Read + Write {
    fn set_timeouts(&self, d: Duration) -> io::Result<()>;
}

impl Stream for TcpStream {
    fn set_timeouts(&self, d: Duration) -> io::Result<()> {
        self.set_read_timeout(Some(d))?;
        self.set_write_timeout(Some(d))
    }
}

impl Stream for UnixStream {
    fn set_timeouts(&self, d: Duration) -> io::Result<()> {
        self.set_read_timeout(Some(d))?;
        self.set_write_timeout(Some(d))
    }
}

/// Framed packets: 3-byte little-endian length, 1-byte sequence number, payload.
struct Packets<'a> {
    stream: &'a mut dyn Stream,
    clock: &'a Clock,
    seq: u8,
}

impl Packets<'_> {
    fn io_error(&self, e: io::Error, phase: &str) -> String {
        if net::is_timeout(&e) {
            self.clock.timed_out(phase)
        } else if e.kind() == io::ErrorKind::UnexpectedEof {
            format!("connection closed {phase}")
        } else {
            format!("{phase}: {e}")
        }
    }

    fn read(&mut self, phase: &str) -> Result<Vec<u8>, String> {
        let left = self.clock.remaining(phase)?;
        self.stream
            .set_timeouts(left)
            .map_err(|e| format!("socket: {e}"))?;
        let mut head = [0u8; 4];
        self.stream
            .read_exact(&mut head)
            .map_err(|e| self.io_error(e, phase))?;
        let len = u32::from_le_bytes([head[0], head[1], head[2], 0]) as usize;
        if len > PACKET_CAP {
            return Err(format!(
                "{phase}: packet of {len} bytes: is this a MariaDB server?"
            ));
        }
        self.seq = head[3].wrapping_add(1);
        let mut payload = vec![0u8; len];
        self.stream
            .read_exact(&mut payload)
            .map_err(|e| self.io_error(e, phase))?;
        Ok(payload)
    }

    fn write(&mut self, payload: &[u8], phase: &str) -> Result<(), String> {
        let left = self.clock.remaining(phase)?;
        self.stream
            .set_timeouts(left)
            .map_err(|e| format!("socket: {e}"))?;
        let len = (payload.len() as u32).to_le_bytes();
        let mut frame = vec![len[0], len[1], len[2], self.seq];
        frame.extend_from_slice(payload);
        self.seq = self.seq.wrapping_add(1);
        self.stream
            .write_all(&frame)
            .map_err(|e| self.io_error(e, phase))
    }
}

/// What the server's first packet says.
#[derive(Debug, PartialEq)]
struct Handshake {
    version: String,
    connection_id: u32,
    scramble: Vec<u8>,
}

/// Reads a NUL-terminated string.
fn cstr(data: &[u8]) -> (String, &[u8]) {
    let end = data.iter().position(|b| *b == 0).unwrap_or(data.len());
    let rest = data.get(end + 1..).unwrap_or(&[]);
    (String::from_utf8_lossy(&data[..end]).into_owned(), rest)
}

/// `ERR` packet: 0xff, code, `#` + SQLSTATE, message.
fn error_message(p: &[u8]) -> String {
    let code = p
        .get(1..3)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .unwrap_or(0);
    let mut text = p.get(3..).unwrap_or(&[]);
    if text.first() == Some(&b'#') {
        text = text.get(6..).unwrap_or(&[]);
    }
    format!("{} (error {code})", String::from_utf8_lossy(text))
}

fn parse_handshake(p: &[u8]) -> Result<Handshake, String> {
    let bad = || "malformed handshake packet: is this a MariaDB server?".to_string();
    match p.first() {
        Some(0x0a) => {}
        Some(0xff) => {
            return Err(format!(
                "server refused the connection: {}",
                error_message(p)
            ))
        }
        _ => return Err(bad()),
    }
    let (version, rest) = cstr(&p[1..]);
    if rest.len() < 4 + 8 + 1 + 2 {
        return Err(bad());
    }
    let connection_id = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
    let mut scramble = rest[4..12].to_vec();
    let rest = &rest[13..];
    // caps_low(2) charset(1) status(2) caps_high(2) auth_len(1) reserved(10), then part 2
    // of the scramble (the default auth plugin's name follows; we answer with native anyway).
    if rest.len() >= 2 + 1 + 2 + 2 + 1 + 10 {
        let auth_len = rest[7] as usize;
        let tail = &rest[18..];
        let part2_len = auth_len.saturating_sub(8).max(13).min(tail.len());
        let part2 = &tail[..part2_len];
        // Part 2 ends with a NUL that is not part of the scramble.
        scramble.extend_from_slice(part2.strip_suffix(&[0]).unwrap_or(part2));
    }
    // MariaDB prefixes "5.5.5-" for the sake of old replication clients.
    let version = version
        .strip_prefix("5.5.5-")
        .unwrap_or(&version)
        .to_string();
    Ok(Handshake {
        version,
        connection_id,
        scramble,
    })
}

/// mysql_native_password: SHA1(pw) XOR SHA1(scramble + SHA1(SHA1(pw))); empty for no password.
fn native_scramble(password: &str, scramble: &[u8]) -> Vec<u8> {
    if password.is_empty() {
        return Vec::new();
    }
    let stage1 = Sha1::digest(password.as_bytes());
    let stage2 = Sha1::digest(stage1);
    let mut h = Sha1::new();
    h.update(scramble.get(..20).unwrap_or(scramble));
    h.update(stage2);
    let mix = h.finalize();
    stage1.iter().zip(mix.iter()).map(|(a, b)| a ^ b).collect()
}

fn handshake_response(user: &str, auth: &[u8], plugin: &str) -> Vec<u8> {
    let caps = CLIENT_LONG_PASSWORD
        | CLIENT_PROTOCOL_41
        | CLIENT_TRANSACTIONS
        | CLIENT_SECURE_CONNECTION
        | CLIENT_PLUGIN_AUTH;
    let mut p = Vec::new();
    p.extend_from_slice(&caps.to_le_bytes());
    p.extend_from_slice(&(16u32 << 20).to_le_bytes());
    p.push(45); // utf8mb4_general_ci
    p.extend_from_slice(&[0u8; 23]);
    p.extend_from_slice(user.as_bytes());
    p.push(0);
    p.push(auth.len() as u8);
    p.extend_from_slice(auth);
    p.extend_from_slice(plugin.as_bytes());
    p.push(0);
    p
}

/// Authenticate; `Err` carries the server's reason.
fn authenticate(
    pk: &mut Packets,
    hs: &Handshake,
    user: &str,
    password: &str,
) -> Result<(), String> {
    // Whatever the server's default plugin, offer native; the server sends an auth switch
    // if the user needs another one (or, for unix_socket, just checks the peer's uid).
    let auth = native_scramble(password, &hs.scramble);
    pk.write(
        &handshake_response(user, &auth, NATIVE),
        "sending the login",
    )?;
    loop {
        let reply = pk.read("waiting for the login result")?;
        match reply.first() {
            Some(0x00) => return Ok(()),
            Some(0xff) => {
                return Err(format!(
                    "authentication as {user} failed: {}",
                    error_message(&reply)
                ))
            }
            Some(0xfe) => {
                let (plugin, data) = cstr(&reply[1..]);
                let data = data.strip_suffix(&[0]).unwrap_or(data);
                match plugin.as_str() {
                    NATIVE => pk.write(&native_scramble(password, data), "answering the auth switch")?,
                    // unix_socket needs nothing from us: the server reads the peer's uid.
                    "unix_socket" => pk.write(&[], "answering the auth switch")?,
                    other => {
                        return Err(format!(
                            "user {user} authenticates with {other}, which this probe does not speak (use mysql_native_password or unix_socket)"
                        ))
                    }
                }
            }
            _ => return Err("unexpected packet during login".into()),
        }
    }
}

/// `SELECT 1` must come back as one row holding `1`.
fn select_one(pk: &mut Packets) -> Result<(), String> {
    pk.seq = 0;
    pk.write(b"\x03SELECT 1", "sending SELECT 1")?;
    let first = pk.read("waiting for SELECT 1")?;
    if first.first() == Some(&0xff) {
        return Err(format!("SELECT 1 failed: {}", error_message(&first)));
    }
    let columns = *first.first().ok_or("empty reply to SELECT 1")? as usize;
    let is_eof = |p: &[u8]| p.first() == Some(&0xfe) && p.len() < 9;
    for _ in 0..columns {
        pk.read("reading the column definitions")?;
    }
    // Without CLIENT_DEPRECATE_EOF an EOF packet closes the column definitions.
    if !is_eof(&pk.read("reading the column definitions")?) {
        return Err("malformed result set for SELECT 1".into());
    }
    let mut value = None;
    loop {
        let row = pk.read("reading the rows")?;
        if is_eof(&row) {
            break;
        }
        if row.first() == Some(&0xff) {
            return Err(format!("SELECT 1 failed: {}", error_message(&row)));
        }
        let len = *row.first().unwrap_or(&0) as usize;
        value = row
            .get(1..1 + len)
            .map(|v| String::from_utf8_lossy(v).into_owned());
    }
    match value.as_deref() {
        Some("1") => Ok(()),
        other => Err(format!("SELECT 1 returned {other:?}")),
    }
}

pub(super) fn probe(spec: &CheckSpec, ctx: &ProbeContext) -> Verdict {
    let clock = Clock::new(ctx.timeout);
    let password = match spec.password_secret.as_deref().map(secret).transpose() {
        Ok(p) => p,
        Err(e) => return Verdict::unknown(e),
    };
    // No secret: an empty password (socket-authenticated users, passwordless test roots).
    let password = password.as_ref().map_or("", |p| p.expose());
    let mut tcp;
    let mut unix;
    let (stream, target): (&mut dyn Stream, String) = if let Some(path) = &spec.socket {
        // Connecting to a unix socket does not block on the network; no budget needed.
        match UnixStream::connect(path) {
            Ok(s) => {
                unix = s;
                (&mut unix, path.clone())
            }
            Err(e) => return Verdict::critical(format!("connecting to socket {path} failed: {e}")),
        }
    } else {
        let address = spec.address.as_deref().unwrap_or("");
        match net::connect_address(address, &clock) {
            Ok(s) => {
                tcp = s;
                (&mut tcp, address.to_string())
            }
            Err(e) => return Verdict::critical(e),
        }
    };
    let connect_ms = clock.elapsed_ms();
    let mut pk = Packets {
        stream,
        clock: &clock,
        seq: 0,
    };
    let hs = match pk
        .read("waiting for the server greeting")
        .and_then(|p| parse_handshake(&p))
    {
        Ok(hs) => hs,
        Err(e) => {
            return Verdict::critical(format!("{target}: {e}")).metric("connect_ms", connect_ms)
        }
    };
    let mut v = match &spec.user {
        None => Verdict::ok(format!(
            "MariaDB {} reachable and answering (connection {})",
            hs.version, hs.connection_id
        )),
        Some(user) => {
            match authenticate(&mut pk, &hs, user, password).and_then(|()| select_one(&mut pk)) {
                Ok(()) => {
                    // COM_QUIT: a clean goodbye keeps "aborted connection" out of the server log.
                    pk.seq = 0;
                    let _ = pk.write(&[0x01], "quitting");
                    Verdict::ok(format!(
                        "MariaDB {}: logged in as {user}, SELECT 1 answered",
                        hs.version
                    ))
                }
                Err(e) => Verdict::critical(e),
            }
        }
    };
    let total_ms = clock.elapsed_ms();
    if v.status == Status::Ok {
        v.summary.push_str(&format!(" in {total_ms:.0} ms"));
        v.judge_time(spec, "answer", total_ms);
    }
    v.metric("connect_ms", connect_ms)
        .metric("response_ms", total_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_password_scramble_matches_the_known_vector() {
        // SHA1("") is irrelevant: an empty password sends no auth data.
        assert!(native_scramble("", b"01234567890123456789").is_empty());
        let s = native_scramble("secret", b"abcdefghijklmnopqrst");
        assert_eq!(s.len(), 20);
        // Recompute independently: SHA1(pw) XOR SHA1(scramble + SHA1(SHA1(pw))).
        let stage1 = Sha1::digest(b"secret");
        let mix =
            Sha1::digest([b"abcdefghijklmnopqrst".as_slice(), &Sha1::digest(stage1)].concat());
        let expect: Vec<u8> = stage1.iter().zip(mix.iter()).map(|(a, b)| a ^ b).collect();
        assert_eq!(s, expect);
    }

    #[test]
    fn handshake_packets() {
        let mut p = vec![0x0a];
        p.extend_from_slice(b"5.5.5-10.11.6-MariaDB\0");
        p.extend_from_slice(&7u32.to_le_bytes());
        p.extend_from_slice(b"abcdefgh\0");
        p.extend_from_slice(&0xf7feu16.to_le_bytes());
        p.push(45);
        p.extend_from_slice(&2u16.to_le_bytes());
        p.extend_from_slice(&0x0008u16.to_le_bytes()); // CLIENT_PLUGIN_AUTH high bit
        p.push(21);
        p.extend_from_slice(&[0u8; 10]);
        p.extend_from_slice(b"ijklmnopqrst\0");
        p.extend_from_slice(b"mysql_native_password\0");
        let hs = parse_handshake(&p).unwrap();
        assert_eq!(hs.version, "10.11.6-MariaDB");
        assert_eq!(hs.connection_id, 7);
        assert_eq!(hs.scramble, b"abcdefghijklmnopqrst");
        assert!(parse_handshake(b"").is_err());
        assert!(parse_handshake(&[0x0a, b'x']).is_err());
        let err = parse_handshake(b"\xff\x10\x04Too many connections").unwrap_err();
        assert!(err.contains("Too many connections (error 1040)"), "{err}");
    }
}
