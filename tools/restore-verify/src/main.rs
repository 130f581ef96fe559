use pimops::cli::ExitStyle;
use restore_verify::Cli;

fn main() -> std::process::ExitCode {
    pimops::cli::run_main::<Cli, _>("restore-verify", ExitStyle::Standard, restore_verify::run)
}
