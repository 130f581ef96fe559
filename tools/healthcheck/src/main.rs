use healthcheck::Cli;
use pimops::cli::ExitStyle;

fn main() -> std::process::ExitCode {
    pimops::cli::run_main::<Cli, _>("healthcheck", ExitStyle::Nagios, healthcheck::run)
}
