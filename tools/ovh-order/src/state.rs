//! The state file: every order ovh-order placed, for the next run (no double order) and
//! for a person auditing what was bought. JSON, no secrets, replaced atomically.

use std::path::Path;

use pimops::error::io_reason;
use pimops::lock::{Lock, LockGuard};
use pimops::{Error, Result};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    #[serde(default)]
    pub orders: Vec<OrderRecord>,
    /// Checkouts whose answer was lost and whose order had not shown in `/me/order` yet:
    /// the next `order` of the same configuration looks for it before anything else.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub uncertain: Vec<UncertainCheckout>,
}

/// A checkout that may or may not have placed an order.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UncertainCheckout {
    /// `server` or `ip`, as in [`OrderRecord::kind`].
    pub kind: String,
    pub config_hash: String,
    /// OVH's time, RFC 3339, from which `/me/order` was listed around the checkout.
    pub listed_from: String,
    /// OVH's time of the checkout, RFC 3339.
    pub checkout_at: String,
    /// The account's orders listed just before the checkout: anything newer is its order.
    pub orders_before: Vec<u64>,
    /// Why the answer was lost, for the person reading the file.
    pub cause: String,
}

/// One placed order.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OrderRecord {
    pub order_id: u64,
    /// `server` (the whole cart of `order`) or `ip` (`ip order`).
    pub kind: String,
    pub url: String,
    /// e.g. `110.69 €`, as OVH wrote it.
    pub price_with_tax: String,
    pub price_without_tax: String,
    /// RFC 3339, UTC.
    pub ordered_at: String,
    /// `sha256:` of the ordered configuration (see `cart::Wanted::hash`).
    pub config_hash: String,
    /// How the order was confirmed: `checkout`, or `lookup` after a failed checkout answer.
    pub recorded_from: String,
    /// The delivered service (server name), once `wait` saw it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
}

impl State {
    /// The state at `path`; a missing file is an empty state.
    pub fn load(path: &Path) -> Result<State> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| Error::data(format!("state file {}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(Error::failed(format!(
                "state file {}: cannot read: {}",
                path.display(),
                io_reason(&e)
            ))),
        }
    }

    /// Write to a temp file next to `path`, then rename over it.
    pub fn save(&self, path: &Path) -> Result<()> {
        let fail = |e: std::io::Error| {
            Error::failed(format!(
                "state file {}: cannot write: {}",
                path.display(),
                io_reason(&e)
            ))
        };
        let mut text = serde_json::to_string_pretty(self)
            .map_err(|e| Error::failed(format!("serialising the state: {e}")))?;
        text.push('\n');
        pimops::atomic_file::write(path, text.as_bytes(), None).map_err(fail)
    }

    /// The last order of `kind`, or of any kind.
    pub fn last(&self, kind: Option<&str>) -> Option<&OrderRecord> {
        self.orders
            .iter()
            .rev()
            .find(|o| kind.is_none_or(|k| o.kind == k))
    }
}

/// One ordering run at a time per state file: two concurrent `order --yes` would both
/// find no matching order and both check out.
pub fn lock(path: &Path) -> Result<LockGuard> {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    Lock::acquire(&path.with_file_name(name), "ovh-order", "ovh-order order")
}
