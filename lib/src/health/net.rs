//! Time budgets and TCP connections shared by the network probes. Every blocking step gets
//! only what is left of the check's timeout, so a probe never overruns it by more than one
//! system call's rounding.

use std::io;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The time budget of one check.
pub(crate) struct Clock {
    start: Instant,
    limit: Duration,
}

impl Clock {
    pub(crate) fn new(limit: Duration) -> Clock {
        Clock {
            start: Instant::now(),
            limit,
        }
    }

    pub(crate) fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    pub(crate) fn elapsed_ms(&self) -> f64 {
        self.start.elapsed().as_secs_f64() * 1000.0
    }

    /// What is left, or `Err("timed out after 10s <phase>")` when nothing is.
    pub(crate) fn remaining(&self, phase: &str) -> Result<Duration, String> {
        match self.limit.checked_sub(self.start.elapsed()) {
            Some(left) if left >= Duration::from_millis(1) => Ok(left),
            _ => Err(self.timed_out(phase)),
        }
    }

    pub(crate) fn timed_out(&self, phase: &str) -> String {
        format!("timed out after {} {phase}", human_duration(self.limit))
    }
}

/// `10s`, `250ms`, `1m30s`: the inventory's own notation.
pub(crate) fn human_duration(d: Duration) -> String {
    crate::units::Duration(d).to_string()
}

pub(crate) fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Split `host:port` / `[v6]:port` into its parts.
pub(crate) fn split_host_port(address: &str) -> Result<(String, u16), String> {
    let bad = || format!("{address:?} is not host:port");
    let (host, port) = if let Some(rest) = address.strip_prefix('[') {
        let (h, after) = rest.split_once(']').ok_or_else(bad)?;
        (h, after.strip_prefix(':').ok_or_else(bad)?)
    } else {
        address.rsplit_once(':').ok_or_else(bad)?
    };
    let port: u16 = port.parse().map_err(|_| bad())?;
    if host.is_empty() || port == 0 {
        return Err(bad());
    }
    Ok((host.to_string(), port))
}

/// Resolve a host name within the budget. The system resolver cannot be cancelled, so it
/// runs on its own thread and is abandoned when the budget runs out.
pub(crate) fn resolve(host: &str, port: u16, clock: &Clock) -> Result<Vec<SocketAddr>, String> {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let left = clock.remaining(&format!("resolving {host}"))?;
    let (tx, rx) = mpsc::channel();
    let name = host.to_string();
    std::thread::spawn(move || {
        let found = (name.as_str(), port)
            .to_socket_addrs()
            .map(|a| a.collect::<Vec<_>>());
        // The receiver may have given up; nothing to do then.
        let _ = tx.send(found);
    });
    match rx.recv_timeout(left) {
        Ok(Ok(addrs)) if !addrs.is_empty() => Ok(addrs),
        Ok(Ok(_)) => Err(format!("DNS lookup of {host} returned no address")),
        Ok(Err(e)) => Err(format!("DNS lookup of {host} failed: {e}")),
        Err(_) => Err(clock.timed_out(&format!("resolving {host}"))),
    }
}

/// Connect to the first address that answers, within the budget.
pub(crate) fn connect(addrs: &[SocketAddr], clock: &Clock) -> Result<TcpStream, String> {
    let mut last = String::from("no address to connect to");
    for addr in addrs {
        let left = clock.remaining(&format!("connecting to {addr}"))?;
        match TcpStream::connect_timeout(addr, left) {
            Ok(s) => {
                // Probes write small requests and wait for answers: no Nagle delay.
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Err(e) if is_timeout(&e) => {
                return Err(clock.timed_out(&format!("connecting to {addr}")))
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                last = format!("connection to {addr} refused");
            }
            Err(e) => last = format!("connecting to {addr} failed: {e}"),
        }
    }
    Err(last)
}

/// Resolve `host:port` and connect.
pub(crate) fn connect_address(address: &str, clock: &Clock) -> Result<TcpStream, String> {
    let (host, port) = split_host_port(address)?;
    let addrs = resolve(&host, port, clock)?;
    connect(&addrs, clock)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port() {
        assert_eq!(split_host_port("db:3306"), Ok(("db".into(), 3306)));
        assert_eq!(split_host_port("[::1]:6379"), Ok(("::1".into(), 6379)));
        for bad in ["db", "db:", ":1", "db:0", "[::1]", "db:99999"] {
            assert!(split_host_port(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn clock_runs_out() {
        let c = Clock::new(Duration::from_millis(0));
        assert_eq!(
            c.remaining("connecting"),
            Err("timed out after 0s connecting".into())
        );
    }
}
