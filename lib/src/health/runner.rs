//! Running many checks at once. One coordinating loop (the caller's thread) starts at most
//! `concurrency` probe threads, collects their results over a channel and enforces two
//! limits itself, so that no probe can hold up the run: each check's timeout (plus a short
//! grace for the probe to report its own, more precise, timeout) and the overall deadline.
//! A probe past either limit is abandoned, not joined: a hung resolver or NFS mount must not
//! keep a monitoring run from answering.

use std::panic::AssertUnwindSafe;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::net::human_duration;
use super::{
    probe, result_kind, target_of, CheckResult, Planned, ProbeContext, RunOptions, Status,
};

/// Time a probe gets past its own timeout to report it before the runner reports it instead.
const GRACE: Duration = Duration::from_millis(1000);

struct InFlight {
    index: usize,
    started: Instant,
    limit: Instant,
}

/// Run `checks` concurrently and return their results in input order.
pub fn run(checks: &[Planned], opts: &RunOptions) -> Vec<CheckResult> {
    let begun = Instant::now();
    let deadline = opts.deadline.map(|d| begun + d);
    let concurrency = opts.concurrency.max(1);
    let mut results: Vec<Option<CheckResult>> = vec![None; checks.len()];
    let mut in_flight: Vec<InFlight> = Vec::new();
    let mut next = 0;
    let (tx, rx) = mpsc::channel::<(usize, CheckResult)>();

    loop {
        while next < checks.len()
            && in_flight.len() < concurrency
            && deadline.is_none_or(|d| Instant::now() < d)
        {
            let planned = &checks[next];
            let ctx = ProbeContext::for_planned(planned, opts);
            let started = Instant::now();
            in_flight.push(InFlight {
                index: next,
                started,
                limit: started + ctx.timeout + GRACE,
            });
            let spec = planned.spec.clone();
            let tx = tx.clone();
            let index = next;
            let spawned = std::thread::Builder::new()
                .name(format!("check-{index}"))
                .spawn(move || {
                    // A probe must not panic; if one does, the run still reports every check.
                    let result = std::panic::catch_unwind(AssertUnwindSafe(|| probe(&spec, &ctx)))
                        .unwrap_or_else(|_| panicked(&spec, &ctx));
                    // The run may have moved on (deadline); then nobody listens.
                    let _ = tx.send((index, result));
                });
            if let Err(e) = spawned {
                in_flight.pop();
                results[index] = Some(abandoned(
                    planned,
                    Status::Unknown,
                    format!("could not start: {e}"),
                    Duration::ZERO,
                ));
            }
            next += 1;
        }
        if in_flight.is_empty() && next >= checks.len() {
            break;
        }
        let now = Instant::now();
        let mut wake = in_flight.iter().map(|f| f.limit).min().unwrap_or(now);
        if let Some(d) = deadline {
            wake = wake.min(d);
        }
        match rx.recv_timeout(wake.saturating_duration_since(now)) {
            Ok((index, result)) => {
                if let Some(pos) = in_flight.iter().position(|f| f.index == index) {
                    in_flight.swap_remove(pos);
                    results[index] = Some(result);
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            // Unreachable while `tx` lives in this frame; nothing left to wait for anyway.
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        let now = Instant::now();
        in_flight.retain(|f| {
            if now < f.limit {
                return true;
            }
            let planned = &checks[f.index];
            let timeout = ProbeContext::for_planned(planned, opts).timeout;
            let msg = format!("timed out after {}", human_duration(timeout));
            results[f.index] = Some(abandoned(planned, Status::Critical, msg, now - f.started));
            false
        });
        if let (Some(d), Some(total)) = (deadline, opts.deadline) {
            if now >= d {
                let msg = format!(
                    "timed out after {} (overall deadline)",
                    human_duration(total)
                );
                for f in in_flight.drain(..) {
                    results[f.index] = Some(abandoned(
                        &checks[f.index],
                        Status::Critical,
                        msg.clone(),
                        now - f.started,
                    ));
                }
                let never = format!(
                    "timed out after {} (overall deadline; not started)",
                    human_duration(total)
                );
                for (i, planned) in checks.iter().enumerate().skip(next) {
                    results[i] = Some(abandoned(
                        planned,
                        Status::Critical,
                        never.clone(),
                        Duration::ZERO,
                    ));
                }
                break;
            }
        }
    }

    results
        .into_iter()
        .zip(checks)
        .map(|(r, planned)| {
            r.unwrap_or_else(|| {
                abandoned(planned, Status::Unknown, "no result".into(), Duration::ZERO)
            })
        })
        .collect()
}

fn panicked(spec: &super::CheckSpec, ctx: &ProbeContext) -> CheckResult {
    let planned = Planned {
        spec: spec.clone(),
        env: ctx.env.clone(),
        exec: None,
    };
    abandoned(
        &planned,
        Status::Unknown,
        "internal error: the probe panicked".into(),
        Duration::ZERO,
    )
}

/// The result of a check the runner gave up on.
fn abandoned(
    planned: &Planned,
    status: Status,
    message: String,
    duration: Duration,
) -> CheckResult {
    CheckResult {
        name: planned.spec.name.clone(),
        env: planned.env.clone(),
        kind: result_kind(&planned.spec),
        target: target_of(&planned.spec),
        status,
        duration,
        message,
        metrics: Default::default(),
    }
}
