//! What every tool's command line shares: the common flags, the main wrapper that prints
//! `tool: message` once and maps errors to exit codes, and man pages and shell completions
//! generated from the same clap definitions.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{ArgAction, Args, Command, Parser};

use crate::error::{Error, ErrorKind, ExitCode, Result};

/// Flags every tool takes.
#[derive(Args, Debug, Clone, Default)]
pub struct CommonArgs {
    /// The inventory file [default: $PIMOPS_CONFIG, else ./infra.toml]
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Write JSON Lines on stdout even on a terminal
    #[arg(long, global = true)]
    pub json: bool,

    /// More detail on stderr (repeat for more)
    #[arg(short, long, global = true, action = ArgAction::Count)]
    pub verbose: u8,

    /// Less on stderr: -q warnings and errors only, -qq errors only
    #[arg(short, long, global = true, action = ArgAction::Count)]
    pub quiet: u8,
}

impl CommonArgs {
    /// `--config`, else `$PIMOPS_CONFIG`, else `./infra.toml`.
    pub fn config_path(&self) -> PathBuf {
        config_path(self.config.as_deref())
    }

    pub fn format(&self) -> crate::output::Format {
        crate::output::Format::detect(self.json)
    }
}

/// The inventory path: the flag, else `$PIMOPS_CONFIG`, else `./infra.toml`.
pub fn config_path(flag: Option<&Path>) -> PathBuf {
    if let Some(p) = flag {
        return p.to_path_buf();
    }
    match std::env::var_os("PIMOPS_CONFIG") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from("infra.toml"),
    }
}

/// Which exit-code convention a tool follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStyle {
    /// DESIGN.md's codes: 2 usage, 65, 69, 75, 77, 78.
    Standard,
    /// Nagios plugins: usage, configuration and internal errors are all 3 (UNKNOWN).
    Nagios,
}

impl ExitStyle {
    fn for_error(self, e: &Error) -> u8 {
        match (self, e.kind()) {
            (_, ErrorKind::BrokenPipe) => 0,
            (ExitStyle::Standard, _) => e.exit_code().code(),
            (ExitStyle::Nagios, _) => 3,
        }
    }
}

/// Parse arguments, run the tool, print an error once as `tool: message`, exit with the code.
///
/// `run` returns the exit code of a completed run (e.g. 1 when a check found a problem).
pub fn run_main<P, R>(
    tool: &'static str,
    style: ExitStyle,
    run: impl FnOnce(P) -> Result<R>,
) -> std::process::ExitCode
where
    P: Parser,
    R: Into<u8>,
{
    let args = match P::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let code = match e.kind() {
                clap::error::ErrorKind::DisplayHelp
                | clap::error::ErrorKind::DisplayVersion
                | clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
                    if e.exit_code() == 0 =>
                {
                    0
                }
                _ => match style {
                    ExitStyle::Standard => ExitCode::Usage.code(),
                    ExitStyle::Nagios => 3,
                },
            };
            // clap renders help on stdout and errors on stderr; a closed pipe is fine.
            let _ = e.print();
            return std::process::ExitCode::from(code);
        }
    };
    match run(args) {
        Ok(code) => std::process::ExitCode::from(code.into()),
        Err(e) => {
            if e.kind() != ErrorKind::BrokenPipe {
                let _ = writeln!(std::io::stderr(), "{tool}: {e}");
            }
            std::process::ExitCode::from(style.for_error(&e))
        }
    }
}

impl From<ExitCode> for u8 {
    fn from(c: ExitCode) -> u8 {
        c.code()
    }
}

/// The parts of a man page that clap does not know about.
#[derive(Debug, Clone, Default)]
pub struct ManPage {
    /// (code, meaning)
    pub exit_status: Vec<(&'static str, &'static str)>,
    /// (variable, meaning)
    pub environment: Vec<(&'static str, &'static str)>,
    /// (command line, what it does)
    pub examples: Vec<(&'static str, &'static str)>,
    /// Extra free-text sections: (TITLE, paragraphs)
    pub sections: Vec<(&'static str, Vec<&'static str>)>,
}

/// The exit status table every tool but healthcheck shares.
pub fn standard_exit_status() -> Vec<(&'static str, &'static str)> {
    vec![
        ("0", "Done."),
        (
            "1",
            "The operation ran and failed or found a problem (deploy rolled back, verification mismatch, plan refused by a safety threshold).",
        ),
        ("2", "Usage error."),
        ("65", "Malformed input data."),
        ("69", "A remote service stayed unavailable after retries."),
        ("75", "Temporary failure, try again later (lock held, rate limited)."),
        ("77", "Refused: authentication, authorisation, SSH host key mismatch."),
        ("78", "Invalid configuration."),
    ]
}

/// The environment variables every tool reads.
pub fn common_environment() -> Vec<(&'static str, &'static str)> {
    vec![
        (
            "PIMOPS_CONFIG",
            "The inventory file when --config is not given (default ./infra.toml).",
        ),
        ("NO_COLOR", "When set and not empty, no colour on stderr."),
    ]
}

fn roff_escape(s: &str) -> String {
    let mut out = s.replace('\\', "\\e").replace('-', "\\-");
    if out.starts_with('.') || out.starts_with('\'') {
        out.insert_str(0, "\\&");
    }
    out
}

/// Render the man page of `cmd` (and one page per subcommand, `tool-sub.1`) into `dir`.
/// Returns the files written.
pub fn write_man_pages(cmd: Command, extra: &ManPage, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut cmd = cmd;
    cmd.build();
    let mut written = Vec::new();
    let name = cmd.get_name().to_string();
    let path = dir.join(format!("{name}.1"));
    let mut buf = Vec::new();
    let man = clap_mangen::Man::new(cmd.clone());
    man.render_title(&mut buf)?;
    man.render_name_section(&mut buf)?;
    man.render_synopsis_section(&mut buf)?;
    man.render_description_section(&mut buf)?;
    man.render_options_section(&mut buf)?;
    if cmd.get_subcommands().any(|s| !s.is_hide_set()) {
        man.render_subcommands_section(&mut buf)?;
    }
    for (title, paras) in &extra.sections {
        writeln!(buf, ".SH \"{}\"", title.to_uppercase())?;
        for p in paras {
            writeln!(buf, ".PP\n{}", roff_escape(p))?;
        }
    }
    let table = |buf: &mut Vec<u8>, title: &str, rows: &[(&str, &str)]| -> std::io::Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        writeln!(buf, ".SH \"{title}\"")?;
        for (k, v) in rows {
            writeln!(buf, ".TP\n\\fB{}\\fR\n{}", roff_escape(k), roff_escape(v))?;
        }
        Ok(())
    };
    table(&mut buf, "EXIT STATUS", &extra.exit_status)?;
    table(&mut buf, "ENVIRONMENT", &extra.environment)?;
    table(&mut buf, "EXAMPLES", &extra.examples)?;
    if cmd.get_version().is_some() {
        man.render_version_section(&mut buf)?;
    }
    let subs: Vec<String> = cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
        .map(|s| format!("\\fB{name}\\-{}\\fR(1)", roff_escape(s.get_name())))
        .collect();
    if !subs.is_empty() {
        writeln!(buf, ".SH \"SEE ALSO\"\n{}", subs.join(", "))?;
    }
    std::fs::write(&path, &buf)?;
    written.push(path);

    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        let sub_name = format!("{name}-{}", sub.get_name());
        let mut sub_cmd = sub.clone().name(sub_name.clone());
        if let Some(v) = cmd.get_version() {
            sub_cmd = sub_cmd.version(v.to_string());
        }
        let path = dir.join(format!("{sub_name}.1"));
        let mut buf = Vec::new();
        let man = clap_mangen::Man::new(sub_cmd.clone());
        man.render_title(&mut buf)?;
        man.render_name_section(&mut buf)?;
        man.render_synopsis_section(&mut buf)?;
        man.render_description_section(&mut buf)?;
        man.render_options_section(&mut buf)?;
        // A subcommand's page stands alone (`man backup-run-run`): the tool's exit codes
        // and environment hold for it too, and its examples are the tool's that use it.
        let examples: Vec<(&str, &str)> = extra
            .examples
            .iter()
            .copied()
            .filter(|(example, _)| invokes(example, &name, sub.get_name()))
            .collect();
        table(&mut buf, "EXIT STATUS", &extra.exit_status)?;
        table(&mut buf, "ENVIRONMENT", &extra.environment)?;
        table(&mut buf, "EXAMPLES", &examples)?;
        if sub_cmd.get_version().is_some() {
            man.render_version_section(&mut buf)?;
        }
        writeln!(buf, ".SH \"SEE ALSO\"\n\\fB{name}\\fR(1)")?;
        std::fs::write(&path, &buf)?;
        written.push(path);
    }
    Ok(written)
}

/// Whether a shell example runs `tool` with subcommand `sub` in one of its pipeline or
/// `&&` segments (`backup-run --env prod run all` runs `run`).
fn invokes(example: &str, tool: &str, sub: &str) -> bool {
    example
        .split(['|', ';'])
        .flat_map(|part| part.split("&&"))
        .any(|segment| {
            let mut words = segment.split_whitespace();
            words.next() == Some(tool) && words.any(|w| w == sub)
        })
}

/// Write bash, zsh and fish completions for `cmd` into `dir`.
pub fn write_completions(cmd: Command, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    use clap_complete::{generate_to, Shell};
    std::fs::create_dir_all(dir)?;
    let mut cmd = cmd;
    let name = cmd.get_name().to_string();
    let mut out = Vec::new();
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        out.push(generate_to(shell, &mut cmd, &name, dir)?);
    }
    Ok(out)
}

/// Parse a value for a usage error that names the flag: `--timeout: expected a duration like "30s"`.
pub fn usage_error(flag: &str, msg: impl std::fmt::Display) -> Error {
    Error::usage(format!("{flag}: {msg}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Parser, Debug)]
    #[command(name = "demo-tool", about = "A demo")]
    struct Demo {
        #[command(flatten)]
        common: CommonArgs,
        #[command(subcommand)]
        cmd: Option<Sub>,
    }

    #[derive(clap::Subcommand, Debug)]
    enum Sub {
        /// Do a thing
        Thing,
    }

    #[test]
    fn common_flags_parse_anywhere() {
        use clap::Parser as _;
        let d = Demo::try_parse_from(["demo-tool", "thing", "--json", "-vv", "--config", "x.toml"])
            .unwrap();
        assert!(d.common.json);
        assert_eq!(d.common.verbose, 2);
        assert_eq!(d.common.config_path(), PathBuf::from("x.toml"));
        assert!(matches!(d.cmd, Some(Sub::Thing)));
    }

    #[test]
    fn nagios_style_maps_config_errors_to_unknown() {
        assert_eq!(ExitStyle::Nagios.for_error(&Error::config("x")), 3);
        assert_eq!(ExitStyle::Standard.for_error(&Error::config("x")), 78);
        assert_eq!(
            ExitStyle::Nagios.for_error(&Error::new(ErrorKind::BrokenPipe, "x")),
            0
        );
    }

    #[test]
    fn man_pages_have_the_extra_sections() {
        use clap::CommandFactory;
        let dir = tempfile::tempdir().unwrap();
        let extra = ManPage {
            exit_status: standard_exit_status(),
            environment: common_environment(),
            examples: vec![("demo-tool thing --json", "Do the thing, as JSON.")],
            sections: vec![],
        };
        let files = write_man_pages(Demo::command(), &extra, dir.path()).unwrap();
        assert_eq!(files.len(), 2, "{files:?}");
        for file in &files {
            let page = std::fs::read_to_string(file).unwrap();
            for needle in [
                ".SH \"EXIT STATUS\"",
                ".SH \"ENVIRONMENT\"",
                ".SH \"EXAMPLES\"",
                "PIMOPS_CONFIG",
                "demo\\-tool thing \\-\\-json",
            ] {
                assert!(
                    page.contains(needle),
                    "{}: missing {needle}",
                    file.display()
                );
            }
        }
    }

    #[test]
    fn examples_belong_to_the_subcommands_they_run() {
        assert!(invokes(
            "backup-run --env prod run all",
            "backup-run",
            "run"
        ));
        assert!(invokes(
            "cf-sync ips --format cidrs | ovh-order firewall --ip 1.2.3.4 --from -",
            "ovh-order",
            "firewall"
        ));
        assert!(invokes(
            "ovh-order plan && ovh-order order --yes",
            "ovh-order",
            "order"
        ));
        assert!(!invokes(
            "cf-sync ips --format cidrs",
            "ovh-order",
            "firewall"
        ));
        assert!(!invokes(
            "backup-run --env prod run all",
            "backup-run",
            "init"
        ));
    }
}
