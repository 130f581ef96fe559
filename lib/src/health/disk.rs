//! The disk probe: free space of the filesystem holding `path`, as an unprivileged process
//! sees it (`f_bavail`, the way `df` computes it), so the root-reserved blocks do not hide a
//! full disk. Defaults: WARNING below 20 % free, CRITICAL below 10 %.

use super::{CheckSpec, Status, Verdict};

const DEFAULT_WARN_PCT: f64 = 20.0;
const DEFAULT_CRIT_PCT: f64 = 10.0;

fn gib(bytes: f64) -> String {
    format!("{:.1} GiB", bytes / (1u64 << 30) as f64)
}

pub(super) fn probe(spec: &CheckSpec) -> Verdict {
    let path = spec.path.as_deref().unwrap_or("");
    let st = match rustix::fs::statvfs(path) {
        Ok(s) => s,
        Err(e) => return Verdict::critical(format!("cannot stat the filesystem of {path}: {e}")),
    };
    let frsize = st.f_frsize as f64;
    let used = st.f_blocks.saturating_sub(st.f_bfree) as f64 * frsize;
    let avail = st.f_bavail as f64 * frsize;
    let usable = used + avail;
    let free_pct = if usable > 0.0 {
        avail / usable * 100.0
    } else {
        0.0
    };
    let warn = spec.warn_free_pct.unwrap_or(DEFAULT_WARN_PCT);
    let crit = spec.crit_free_pct.unwrap_or(DEFAULT_CRIT_PCT);
    let summary = format!(
        "{free_pct:.1}% free ({} of {} available)",
        gib(avail),
        gib(usable)
    );
    let v = Verdict::ok(summary);
    let v = if free_pct < crit {
        v.problem(Status::Critical, format!("below {crit}% free"))
    } else if free_pct < warn {
        v.problem(Status::Warning, format!("below {warn}% free"))
    } else {
        v
    };
    v.metric("free_pct", free_pct).metric("free_bytes", avail)
}
