//! SIGINT and SIGTERM become a flag the verbs poll between steps, so the work directory and
//! the scratch server are removed by their Drop guards instead of being left behind. A
//! Ctrl-C on a terminal (and systemd's stop, which signals the whole cgroup) also reaches
//! the child processes, so the running step fails at once and the unwinding starts. A
//! second signal exits immediately (130), for an operator who insists.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use pimops::{Error, Result};
use signal_hook::consts::{SIGINT, SIGTERM};

#[derive(Clone)]
pub struct Interrupt(Arc<AtomicBool>);

impl Interrupt {
    pub fn install() -> Result<Interrupt> {
        let flag = Arc::new(AtomicBool::new(false));
        for sig in [SIGINT, SIGTERM] {
            // Order matters: the conditional exit sees the flag as it was before this
            // signal, so only the second signal exits.
            signal_hook::flag::register_conditional_shutdown(sig, 130, Arc::clone(&flag))
                .and_then(|_| signal_hook::flag::register(sig, Arc::clone(&flag)))
                .map_err(|e| Error::io("installing the signal handlers", e))?;
        }
        Ok(Interrupt(flag))
    }

    pub fn raised(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// An error once a signal arrived: the caller stops and cleans up.
    pub fn check(&self) -> Result<()> {
        if self.raised() {
            Err(Error::failed(
                "interrupted by a signal: stopped and cleaned up",
            ))
        } else {
            Ok(())
        }
    }
}
