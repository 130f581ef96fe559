use backup_run::Cli;
use pimops::cli::ExitStyle;

fn main() -> std::process::ExitCode {
    pimops::cli::run_main::<Cli, _>("backup-run", ExitStyle::Standard, backup_run::run)
}
