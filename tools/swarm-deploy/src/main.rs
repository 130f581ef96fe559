use pimops::cli::ExitStyle;
use swarm_deploy::Cli;

fn main() -> std::process::ExitCode {
    pimops::cli::run_main::<Cli, _>("swarm-deploy", ExitStyle::Standard, swarm_deploy::run)
}
