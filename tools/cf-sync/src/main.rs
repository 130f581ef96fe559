use cf_sync::Cli;
use pimops::cli::ExitStyle;

fn main() -> std::process::ExitCode {
    pimops::cli::run_main::<Cli, _>("cf-sync", ExitStyle::Standard, cf_sync::run)
}
