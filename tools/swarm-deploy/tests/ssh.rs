//! The SSH transport: `docker = "ssh://user@127.0.0.1:PORT"` runs every docker command, the
//! lock and the audit log on the "manager" through a real sshd, with strict host keys.

mod common;

use common::Estate;
use pimops_test_support::sshd::Sshd;

#[test]
fn deploy_over_ssh_with_strict_host_keys() {
    let sshd = Sshd::start();
    let e = Estate::new();
    let ssh_env = |known_hosts: &std::path::Path| {
        format!(
            "docker = \"{}\"\nssh = {{ identity = \"{}\", known_hosts = \"{}\" }}\n",
            sshd.target(),
            sshd.identity().display(),
            known_hosts.display()
        )
    };
    let local = std::fs::read_to_string(e.config()).unwrap();
    let over_ssh = |kh: &std::path::Path| local.replacen("docker = \"local\"\n", &ssh_env(kh), 1);

    std::fs::write(e.config(), over_ssh(&sshd.wrong_known_hosts())).unwrap();
    let refused = e.deploy("v1");
    refused.assert_code(77);
    assert!(e.audit().is_empty(), "nothing happened on the manager");

    std::fs::write(e.config(), over_ssh(&sshd.known_hosts())).unwrap();
    let out = e.deploy("v1");
    out.assert_success();
    assert_eq!(out.records_of("summary")[0]["result"], "ok", "{out}");
    assert_eq!(e.get().as_deref(), Some("v1\n"));
    let again = e.deploy("v1");
    again.assert_success();
    assert_eq!(again.records_of("summary")[0]["result"], "unchanged");
    let history = e.cmd().args(["history", "--json", "--env", "test"]).run();
    history.assert_success();
    assert_eq!(history.records_of("deploy").len(), 2);
}
