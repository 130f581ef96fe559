//! On a terminal: the table is the default and colour follows NO_COLOR. The terminal is a
//! real pseudo-terminal made by util-linux `script`.

use pimops_test_support::command::TestCommand;
use pimops_test_support::require_program;

/// `healthcheck ARGS` with stdout on a pty (exit 2 expected); what the terminal showed.
fn on_tty(args: &str, no_color: bool) -> String {
    let line = format!("{} {args}", env!("CARGO_BIN_EXE_healthcheck"));
    let mut cmd = TestCommand::new(require_program("script")).env("TERM", "xterm");
    if no_color {
        cmd = cmd.env("NO_COLOR", "1");
    }
    let out = cmd.args(["-qec", &line, "/dev/null"]).run();
    assert_eq!(out.status, Some(2), "{out}");
    // The pty turns \n into \r\n.
    out.stdout.replace("\r\n", "\n")
}

#[test]
fn a_terminal_gets_a_coloured_table_unless_no_color() {
    let closed = format!("127.0.0.1:{}", pimops_test_support::free_port());
    let coloured = on_tty(&format!("tcp {closed}"), false);
    assert!(coloured.starts_with("STATUS    ENV  NAME"), "{coloured:?}");
    assert!(
        coloured.contains("\x1b[1;31mCRITICAL\x1b[0m"),
        "{coloured:?}"
    );

    let plain = on_tty(&format!("tcp {closed}"), true);
    assert!(plain.starts_with("STATUS"), "{plain:?}");
    assert!(!plain.contains('\x1b'), "{plain:?}");

    let json = on_tty(&format!("tcp {closed} --json"), false);
    assert!(json.starts_with("{\"type\":\"check\""), "{json:?}");
}
