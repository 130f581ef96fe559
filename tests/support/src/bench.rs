//! What the benchmarks share: waiting for a child while sampling its peak memory.

use std::process::{Child, ExitStatus};
use std::time::Duration;

/// Wait for `child`, sampling its peak resident set (`VmHWM` in `/proc/PID/status`) every
/// `poll`; returns the exit status and the peak in KiB. Sampling, not getrusage: rustix
/// 0.38 has no getrusage, and the workspace forbids unsafe code.
pub fn wait_measuring_peak(child: &mut Child, poll: Duration) -> (ExitStatus, u64) {
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    loop {
        if let Some(kib) = std::fs::read_to_string(&status_file)
            .ok()
            .as_deref()
            .and_then(vm_hwm_kib)
        {
            peak = peak.max(kib);
        }
        match child.try_wait().expect("waiting for the benchmarked child") {
            Some(s) => return (s, peak),
            None => std::thread::sleep(poll),
        }
    }
}

fn vm_hwm_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
