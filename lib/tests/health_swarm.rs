//! The swarm probe against the machine's real single-node swarm, with services from a
//! busybox image built FROM scratch by the test.

mod health_common;

use std::sync::{Arc, OnceLock};

use health_common::{metric, run_with_exec};
use pimops::exec::LocalExec;
use pimops::health::Status;
use pimops_test_support::swarm::{build_busybox_image, unique_name, Service, Swarm};

fn image() -> &'static str {
    static TAG: OnceLock<String> = OnceLock::new();
    TAG.get_or_init(|| {
        Swarm::require();
        let tag = format!("pimops-test-busybox:{}", std::process::id());
        build_busybox_image(&tag, &[]);
        tag
    })
}

fn check(stack: &str) -> String {
    format!("name = \"stack\"\nkind = \"swarm\"\nstack = \"{stack}\"\n")
}

#[test]
fn a_stack_at_its_replicas_is_ok() {
    let stack = unique_name("hcok");
    let _web = Service::builder("web", image())
        .stack(&stack)
        .args(&["/bin/busybox", "sleep", "600"])
        .create();
    let r = run_with_exec(&check(&stack), Arc::new(LocalExec));
    assert_eq!(r.status, Status::Ok, "{}", r.message);
    assert_eq!(r.message, "1 services, 1/1 tasks running");
    assert_eq!((metric(&r, "running"), metric(&r, "desired")), (1.0, 1.0));
}

#[test]
fn crashing_and_unschedulable_services_are_critical_and_named() {
    let stack = unique_name("hcbad");
    let _ok = Service::builder("ok", image())
        .stack(&stack)
        .args(&["/bin/busybox", "sleep", "600"])
        .create();
    let crash = Service::builder("crash", image())
        .stack(&stack)
        .args(&["/bin/busybox", "false"])
        .no_wait()
        .create();
    let pinned = Service::builder("pinned", image())
        .stack(&stack)
        .constraint("node.labels.pimops-test-nowhere==true")
        .args(&["/bin/busybox", "sleep", "600"])
        .no_wait()
        .create();
    let r = run_with_exec(&check(&stack), Arc::new(LocalExec));
    assert_eq!(r.status, Status::Critical, "{}", r.message);
    assert!(
        r.message.starts_with(&format!(
            "below desired replicas: {} 0/1, {} 0/1",
            crash.name(),
            pinned.name()
        )),
        "{}",
        r.message
    );
    assert_eq!((metric(&r, "running"), metric(&r, "desired")), (1.0, 3.0));
}

#[test]
fn a_stack_without_services_is_critical() {
    Swarm::require();
    let stack = unique_name("hcnone");
    let r = run_with_exec(&check(&stack), Arc::new(LocalExec));
    assert_eq!(r.status, Status::Critical);
    assert_eq!(r.message, format!("stack {stack} has no services"));
}
