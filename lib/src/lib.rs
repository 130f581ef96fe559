//! pimops: the shared library behind the pimops tools.
//!
//! Everything two tools need lives here and nowhere else: the inventory (`infra.toml`),
//! secrets, output (JSON Lines or human text), the error type and its exit codes, HTTP with
//! retries, SSH with strict host keys, one `Exec` for local and remote commands, file locks,
//! Prometheus textfile metrics, and the health-check engine that both `healthcheck` and
//! `swarm-deploy` run.

pub mod atomic_file;
pub mod backupset;
pub mod cli;
pub mod cloudflare;
pub mod error;
pub mod exec;
pub mod health;
pub mod http;
pub mod hyperv;
pub mod inventory;
pub mod lock;
pub mod mariadb;
pub mod metrics;
pub mod output;
pub mod ovh;
pub mod ping;
pub mod restic;
pub mod s3;
pub mod secrets;
pub mod ssh;
pub mod units;

pub use error::{Error, ErrorKind, ExitCode, Result};
