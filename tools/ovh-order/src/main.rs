use ovh_order::Cli;
use pimops::cli::ExitStyle;

fn main() -> std::process::ExitCode {
    pimops::cli::run_main::<Cli, _>("ovh-order", ExitStyle::Standard, ovh_order::run)
}
