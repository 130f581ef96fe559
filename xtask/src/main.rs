//! `cargo run -p xtask -- man DIR` and `cargo run -p xtask -- completions DIR`: man pages and
//! shell completions generated from the same clap definitions the binaries parse with, so
//! they cannot drift from `--help`.

use std::path::PathBuf;
use std::process::ExitCode;

type Tool = (fn() -> clap::Command, fn() -> pimops::cli::ManPage);

/// Every binary of the workspace: its clap definition and the man page parts clap lacks.
fn tools() -> Vec<Tool> {
    vec![
        (backup_run::command, backup_run::man_page),
        (cf_sync::command, cf_sync::man_page),
        (healthcheck::command, healthcheck::man_page),
        (hv_provision::command, hv_provision::man_page),
        (ovh_order::command, ovh_order::man_page),
        (restore_verify::command, restore_verify::man_page),
        (swarm_deploy::command, swarm_deploy::man_page),
    ]
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (task, dir) = match args.as_slice() {
        [t, d] => (t.as_str(), PathBuf::from(d)),
        _ => {
            eprintln!("usage: xtask (man|completions) DIR");
            return ExitCode::from(2);
        }
    };
    for (command, man_page) in tools() {
        let result = match task {
            "man" => pimops::cli::write_man_pages(command(), &man_page(), &dir),
            "completions" => pimops::cli::write_completions(command(), &dir),
            _ => {
                eprintln!("xtask: unknown task {task:?}: expected man or completions");
                return ExitCode::from(2);
            }
        };
        match result {
            Ok(files) => {
                for f in files {
                    eprintln!("xtask: wrote {}", f.display());
                }
            }
            Err(e) => {
                eprintln!("xtask: {task} into {}: {e}", dir.display());
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}
