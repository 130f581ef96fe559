//! The sshd fixture itself, checked with the OpenSSH client: if these fail, the pimops SSH
//! tests cannot mean anything.

use pimops_test_support::require_program;
use pimops_test_support::sshd::Sshd;

fn openssh(sshd: &Sshd, known_hosts: &std::path::Path) -> std::process::Output {
    std::process::Command::new(require_program("ssh"))
        .args([
            "-F",
            "/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
        ])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
        .arg("-i")
        .arg(sshd.identity())
        .arg("-p")
        .arg(sshd.port().to_string())
        .arg(format!("{}@127.0.0.1", sshd.user()))
        .arg("echo fixture-ok")
        .output()
        .expect("running ssh")
}

#[test]
fn openssh_client_logs_in_with_the_fixture_key_and_known_hosts() {
    let sshd = Sshd::start();
    let out = openssh(&sshd, &sshd.known_hosts());
    assert!(
        out.status.success(),
        "ssh failed: {}\nsshd log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        sshd.log()
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "fixture-ok\n");
    assert_eq!(
        sshd.target(),
        format!("ssh://{}@127.0.0.1:{}", sshd.user(), sshd.port())
    );
}

#[test]
fn openssh_client_rejects_the_wrong_known_hosts() {
    let sshd = Sshd::start();
    let out = openssh(&sshd, &sshd.wrong_known_hosts());
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("HOST IDENTIFICATION HAS CHANGED"), "{err}");
}

#[test]
fn stopped_server_refuses_connections() {
    let mut sshd = Sshd::start();
    let port = sshd.port();
    sshd.stop();
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}
