//! What the healthcheck CLI tests share.

// Each test file compiles this module on its own and uses only part of it.
#![allow(dead_code)]

use pimops_test_support::command::TestCommand;

/// The built binary, with the harness's clean environment.
pub fn hc() -> TestCommand {
    TestCommand::new(env!("CARGO_BIN_EXE_healthcheck"))
}

/// An http URL nobody listens on: connection refused, CRITICAL.
pub fn closed_url() -> String {
    format!("http://127.0.0.1:{}/", pimops_test_support::free_port())
}

/// The status word of every check record, in order.
pub fn statuses(out: &pimops_test_support::command::Outcome) -> Vec<String> {
    out.records_of("check")
        .iter()
        .map(|r| r["status"].as_str().unwrap_or("?").to_string())
        .collect()
}
