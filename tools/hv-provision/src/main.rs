use hv_provision::Cli;
use pimops::cli::ExitStyle;

fn main() -> std::process::ExitCode {
    pimops::cli::run_main::<Cli, _>("hv-provision", ExitStyle::Standard, hv_provision::run)
}
