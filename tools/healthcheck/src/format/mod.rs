//! The four stdout formats. Each renders the whole run at once: the engine returns every
//! result together, and a table needs all rows to align its columns.

pub mod human;
pub mod json;
pub mod nagios;
pub mod prometheus;

use std::io::IsTerminal;

use pimops::output::Output;
use pimops::Result;

use crate::report::{Entry, Summary};

/// `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// An aligned table and a summary line
    Human,
    /// JSON Lines: one "check" record per check, then a "summary" record
    Json,
    /// A Nagios plugin status line with perfdata, then one line per non-OK check
    Nagios,
    /// Prometheus text format, blackbox_exporter-like
    Prometheus,
}

impl Format {
    /// The flag, else `--json`, else human on a terminal and JSON Lines otherwise.
    pub fn choose(flag: Option<Format>, json: bool) -> Format {
        match (flag, json) {
            (Some(f), _) => f,
            (None, true) => Format::Json,
            (None, false) => match pimops::output::Format::detect(false) {
                pimops::output::Format::Human => Format::Human,
                pimops::output::Format::Json => Format::Json,
            },
        }
    }
}

/// Colour in the human table: stdout is a terminal and `NO_COLOR` is unset or empty.
pub fn stdout_color() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Write the run in `format` to `out`.
pub fn write(out: &mut Output, format: Format, entries: &[Entry], summary: &Summary) -> Result<()> {
    match format {
        Format::Json => {
            for rec in json::records(entries, summary) {
                out.json(&rec)?;
            }
            Ok(())
        }
        Format::Human => out.text(&human::render(entries, summary, stdout_color())),
        Format::Nagios => out.text(&nagios::render(entries, summary)),
        Format::Prometheus => out.text(&prometheus::render(entries)?),
    }
}
