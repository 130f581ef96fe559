//! hv-provision end to end: the built binary against the Hyper-V host simulator behind a
//! real sshd.

mod common;

use common::hv_code;
use pimops_test_support::command::{TempDir, TestCommand};
use pimops_test_support::hyperv_simulator::{HyperVSimulator, Model, GIB};
use pimops_test_support::require_program;
use serde_json::Value;

const BASE: &str = r"D:\Images\debian-12-genericcloud-amd64.vhdx";
const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOnlyATestKeyForTheSeed ops@example";

struct World {
    sim: HyperVSimulator,
    dir: TempDir,
}

fn world() -> World {
    require_program("xorriso");
    let sim = HyperVSimulator::start(Model::new("External", BASE), hv_code());
    let dir = TempDir::new();
    let w = World { sim, dir };
    w.write_config("dev", 2, "4GiB", "00:15:5D:0A:00:30");
    w.dir.write(
        "cf.txt",
        "173.245.48.0/20\n103.21.244.0/22\n2400:cb00::/32\n",
    );
    w
}

impl World {
    /// dev with these settings; prod fixed.
    fn write_config(&self, _env: &str, cpus: u32, memory: &str, mac: &str) {
        let s = self.sim.sshd();
        let text = format!(
            r#"project = "pim"
[hyperv]
host = "127.0.0.1"
port = {port}
user = "{user}"
identity = "{identity}"
known_hosts = "{known_hosts}"
switch = "External"
vm_dir = 'D:\Hyper-V'
base_vhdx = '{BASE}'
admin_sources = ["198.51.100.7/32", "203.0.113.0/24"]
state_timeout = 30
[hyperv.seed]
ssh_authorized_keys = ["{KEY}"]

[env.dev]
docker = "local"
vm = {{ cpus = {cpus}, memory = "{memory}", disk = "20GiB", mac = "{mac}", ip = "10.10.0.30/24", gateway = "10.10.0.1", nameservers = ["1.1.1.1"] }}

[env.prod]
docker = "local"
vm = {{ cpus = 8, memory = "8GiB", disk = "40GiB", mac = "00:15:5D:0A:00:10", ip = "10.10.0.10/24", gateway = "10.10.0.1" }}
"#,
            port = s.port(),
            user = s.user(),
            identity = s.identity().display(),
            known_hosts = s.known_hosts().display(),
        );
        self.dir.write("infra.toml", text);
    }

    fn cmd(&self, args: &[&str]) -> TestCommand {
        TestCommand::new(env!("CARGO_BIN_EXE_hv-provision"))
            .arg("--config")
            .arg(self.dir.join("infra.toml"))
            .arg("--json")
            .args(args)
            .current_dir(self.dir.path())
    }

    fn steps(&self, args: &[&str]) -> Vec<Value> {
        let out = self.cmd(&[&["plan"], args].concat()).run();
        out.assert_success();
        out.records_of("step")
    }
}

fn actions(steps: &[Value]) -> Vec<String> {
    steps
        .iter()
        .map(|s| {
            format!(
                "{} {}",
                s["object"].as_str().unwrap_or("?"),
                s["action"].as_str().unwrap_or("?")
            )
        })
        .collect()
}

#[test]
fn plan_apply_plan_is_empty_and_the_host_has_what_the_inventory_says() {
    let w = world();
    let steps = w.steps(&[]);
    assert_eq!(
        actions(&steps),
        [
            "pimops-ssh set_firewall_rule",
            "OpenSSH-Server-In-TCP disable_firewall_rule",
            "RemoteDesktop-UserMode-In-TCP disable_firewall_rule",
            "RemoteDesktop-UserMode-In-UDP disable_firewall_rule",
            "pim-dev create",
            "pim-dev add_disk",
            "pim-dev set_firmware",
            "pim-dev set_options",
            "pim-dev attach_seed",
            "pim-dev start",
            "pim-prod create",
            "pim-prod add_disk",
            "pim-prod set_firmware",
            "pim-prod set_options",
            "pim-prod attach_seed",
            "pim-prod start",
        ]
    );
    assert!(steps.iter().all(|s| s["requires_off"] == false));
    // Prod is touched: refused without --yes=prod, and nothing happened.
    w.sim.take_calls();
    let out = w.cmd(&["apply", "--cloudflare-ips", "cf.txt"]).run();
    out.assert_code(1);
    assert!(out.stderr.contains("--yes=prod"), "{out}");
    assert_eq!(w.sim.take_calls(), ["read-state"]);

    let out = w
        .cmd(&["apply", "--cloudflare-ips", "cf.txt", "--yes=prod"])
        .run();
    out.assert_success();
    assert_eq!(out.records_of("step").len(), 16, "{out}");

    {
        let m = w.sim.model();
        let dev = m.vm("pim-dev").expect("pim-dev exists");
        assert_eq!(dev.state, "Running");
        assert_eq!(
            (dev.generation, dev.cpus, dev.memory_startup),
            (2, 2, 4 * GIB)
        );
        assert!(!dev.dynamic_memory);
        assert_eq!(dev.adapters[0].mac, "00155D0A0030");
        assert_eq!(dev.adapters[0].switch, "External");
        assert_eq!(
            (dev.secure_boot.as_str(), dev.secure_boot_template.as_str()),
            ("On", "MicrosoftUEFICertificateAuthority")
        );
        assert_eq!(
            (
                dev.checkpoint_type.as_str(),
                dev.automatic_start_action.as_str(),
                dev.automatic_stop_action.as_str()
            ),
            ("Production", "Start", "ShutDown")
        );
        let vhd = r"D:\Hyper-V\pim-dev\pim-dev.vhdx";
        assert_eq!(dev.disks, [vhd]);
        assert_eq!(m.vhds[vhd].size, 20 * GIB);
        assert_eq!(m.vhds[vhd].parent, BASE);
        let seed = r"D:\Hyper-V\pim-dev\seed.iso";
        assert_eq!(dev.dvds, [seed]);
        assert!(m.files[seed].len() > 10_000);
        let ssh = m.rule("pimops-ssh").expect("pimops-ssh");
        assert_eq!(ssh.remote_address, ["198.51.100.7/32", "203.0.113.0/24"]);
        assert_eq!(ssh.local_port, [w.sim.sshd().port().to_string()]);
        assert!(!m.rule("OpenSSH-Server-In-TCP").expect("builtin").enabled);
    }
    assert_eq!(w.steps(&[]), Vec::<Value>::new());
    // A second apply changes nothing.
    w.sim.take_calls();
    w.cmd(&["apply", "--yes=prod"]).run().assert_success();
    assert!(w.sim.take_calls().iter().all(|c| c == "read-state"));

    let out = w.cmd(&["status"]).run();
    out.assert_success();
    let vms = out.records_of("vm");
    assert_eq!(vms.len(), 2);
    assert_eq!(vms[0]["state"], "Running");
    assert_eq!(vms[0]["managed"], true);
}

#[test]
fn changes_that_need_the_vm_off_are_refused_without_allow_restart() {
    let w = world();
    w.cmd(&["apply", "--env", "dev", "--cloudflare-ips", "cf.txt"])
        .run()
        .assert_success();
    w.write_config("dev", 4, "6GiB", "00:15:5D:0A:00:31");
    let steps = w.steps(&["--env", "dev"]);
    assert_eq!(
        actions(&steps),
        [
            "pim-dev stop",
            "pim-dev set_cpus",
            "pim-dev set_memory",
            "pim-dev set_mac",
            "pim-dev start"
        ]
    );
    assert_eq!(steps[1]["requires_off"], true);
    assert_eq!(
        (steps[1]["from"].clone(), steps[1]["to"].clone()),
        (2.into(), 4.into())
    );

    w.sim.take_calls();
    let out = w.cmd(&["apply", "--env", "dev"]).run();
    out.assert_code(1);
    assert!(out.stderr.contains("--allow-restart"), "{out}");
    assert_eq!(w.sim.model().vm("pim-dev").map(|v| v.cpus), Some(2));
    assert!(w.sim.take_calls().iter().all(|c| c == "read-state"));

    w.cmd(&["apply", "--env", "dev", "--allow-restart"])
        .run()
        .assert_success();
    let m = w.sim.model();
    let dev = m.vm("pim-dev").expect("pim-dev");
    assert_eq!(
        (
            dev.cpus,
            dev.memory_startup,
            dev.adapters[0].mac.as_str(),
            dev.state.as_str()
        ),
        (4, 6 * GIB, "00155D0A0031", "Running")
    );
    drop(m);
    assert!(w.steps(&["--env", "dev"]).is_empty());
}

#[test]
fn stale_plans_are_refused_and_host_errors_carry_the_cmdlets_message() {
    let w = world();
    w.cmd(&["apply", "--env", "dev", "--cloudflare-ips", "cf.txt"])
        .run()
        .assert_success();
    let plan = w.cmd(&["plan", "--env", "dev"]).run();
    plan.assert_success();
    // Someone starts changing the VM by hand between plan and apply: the plan is stale.
    w.write_config("dev", 3, "4GiB", "00:15:5D:0A:00:30");
    let stale = w
        .cmd(&["apply", "--env", "dev", "--plan", "-"])
        .stdin(plan.stdout.clone())
        .run();
    stale.assert_code(1);
    assert!(stale.stderr.contains("stale"), "{stale}");
    // A current plan is applied, with the running VM shut down and started again.
    w.sim.edit_vm("pim-dev", |v| v.state = "Running".into());
    let fresh = w.cmd(&["plan", "--env", "dev"]).run();
    let out = w
        .cmd(&["apply", "--env", "dev", "--allow-restart", "--plan", "-"])
        .stdin(fresh.stdout.clone())
        .run();
    out.assert_success();
    assert_eq!(w.sim.model().vm("pim-dev").map(|v| v.cpus), Some(3));
    // The VM's disk and the base disk are gone: New-VHD's own message reaches the user.
    {
        let mut m = w.sim.model();
        m.vhds.clear();
        if let Some(v) = m.vm_mut("pim-dev") {
            v.disks.clear();
        }
    }
    assert_eq!(actions(&w.steps(&["--env", "dev"])), ["pim-dev add_disk"]);
    let out = w.cmd(&["apply", "--env", "dev"]).run();
    out.assert_code(1);
    assert!(
        out.stderr.contains("pim-dev add_disk: host script add-disk: New-VHD: The system cannot find the file specified"),
        "{out}"
    );
    // The switch disappears: the plan says so and apply would not run.
    w.sim.model().switches = vec!["Internal".into()];
    w.sim
        .edit_vm("pim-dev", |v| v.adapters[0].switch = "Internal".into());
    let out = w.cmd(&["plan", "--env", "dev"]).run();
    out.assert_code(1);
    let c = out.records_of("conflict");
    assert!(
        c[0]["message"]
            .as_str()
            .unwrap_or("")
            .contains("no virtual switch"),
        "{out}"
    );
}

#[test]
fn a_generation_change_is_a_conflict_and_never_applied() {
    let w = world();
    let id = w.sim.model().add_vm("pim-dev", 1);
    w.sim.edit_vm("pim-dev", |v| {
        v.notes = "managed by hv-provision: project pim env dev".into()
    });
    let out = w.cmd(&["plan", "--env", "dev"]).run();
    out.assert_code(1);
    let c = out.records_of("conflict");
    assert!(
        c[0]["message"]
            .as_str()
            .unwrap_or("")
            .contains("generation 1 on the host, 2 wanted"),
        "{out}"
    );
    let out = w
        .cmd(&[
            "apply",
            "--env",
            "dev",
            "--allow-restart",
            "--cloudflare-ips",
            "cf.txt",
        ])
        .run();
    out.assert_code(1);
    assert_eq!(
        w.sim
            .model()
            .vm("pim-dev")
            .map(|v| (v.id.clone(), v.generation)),
        Some((id, 1))
    );
    // A VM hv-provision did not create is not touched either.
    w.sim.edit_vm("pim-dev", |v| {
        v.notes.clear();
        v.generation = 2;
    });
    let out = w.cmd(&["plan", "--env", "dev"]).run();
    out.assert_code(1);
    assert!(out.stdout.contains("did not create"), "{out}");
}

#[test]
fn destroy_needs_the_vm_name_and_removes_vm_disk_and_seed() {
    let w = world();
    w.cmd(&["apply", "--env", "dev", "--cloudflare-ips", "cf.txt"])
        .run()
        .assert_success();
    let out = w.cmd(&["destroy", "--env", "dev"]).run();
    out.assert_code(1);
    assert!(out.stderr.contains("--yes=pim-dev"), "{out}");
    w.cmd(&["destroy", "--env", "dev", "--yes=dev"])
        .run()
        .assert_code(1);
    assert!(w.sim.model().vm("pim-dev").is_some());
    let out = w.cmd(&["destroy", "--env", "dev", "--yes=pim-dev"]).run();
    out.assert_success();
    let m = w.sim.model();
    assert!(m.vm("pim-dev").is_none());
    assert!(!m.vhds.contains_key(r"D:\Hyper-V\pim-dev\pim-dev.vhdx"));
    assert!(!m.files.contains_key(r"D:\Hyper-V\pim-dev\seed.iso"));
    assert!(m.vhds.contains_key(BASE), "the base disk stays");
    drop(m);
    w.cmd(&["destroy", "--env", "dev", "--yes=pim-dev"])
        .run()
        .assert_success();
}

#[test]
fn a_changed_host_key_is_refused_with_77() {
    let w = world();
    let text = w.dir.read("infra.toml").replace(
        &w.sim.sshd().known_hosts().display().to_string(),
        &w.sim.sshd().wrong_known_hosts().display().to_string(),
    );
    w.dir.write("infra.toml", text);
    let out = w.cmd(&["plan"]).run();
    out.assert_code(77);
    assert!(w.sim.take_calls().is_empty());
}

#[test]
fn the_seed_iso_reads_back_with_label_cidata_and_its_three_files() {
    let w = world();
    w.cmd(&[
        "seed",
        "--env",
        "dev",
        "--cloudflare-ips",
        "cf.txt",
        "--out",
        "seed.iso",
    ])
    .run()
    .assert_success();
    let iso = std::fs::read(w.dir.join("seed.iso")).expect("seed.iso");
    // The primary volume descriptor at sector 16: type 1, "CD001", volume id at offset 40.
    let pvd = &iso[16 * 2048..17 * 2048];
    assert_eq!(&pvd[..6], b"\x01CD001");
    assert_eq!(String::from_utf8_lossy(&pvd[40..72]).trim_end(), "cidata");
    extract_iso(w.dir.join("seed.iso"), w.dir.mkdir("extracted"));
    let user_data = w.dir.read("extracted/user-data");
    assert!(user_data.starts_with("#cloud-config\n"), "{user_data}");
    for needle in [
        KEY,
        "docker.io",
        "198.51.100.7/32",
        "173.245.48.0/20",
        "2400:cb00::/32",
        "tcp dport { 80, 443 } ip saddr @cloudflare4 accept",
        "ip saddr 10.10.0.0/24 tcp dport { 2377, 7946 }",
    ] {
        assert!(
            user_data.contains(needle),
            "{needle} missing from\n{user_data}"
        );
    }
    let swarm = last_runcmd(&user_data);
    assert_eq!(swarm[..2], ["sh", "-c"], "{swarm:?}");
    assert!(
        swarm[2].ends_with("docker swarm init --advertise-addr \"$1\""),
        "{swarm:?}"
    );
    assert_eq!(
        swarm[3..],
        ["swarm-init", "10.10.0.30"],
        "the address as data"
    );
    let meta = w.dir.read("extracted/meta-data");
    assert!(
        meta.contains("instance-id: iid-pim-dev") && meta.contains("local-hostname: pim-dev"),
        "{meta}"
    );
    let net = w.dir.read("extracted/network-config");
    for needle in [
        "version: 2",
        "macaddress: 00:15:5d:0a:00:30",
        "10.10.0.30/24",
        "via: 10.10.0.1",
        "1.1.1.1",
    ] {
        assert!(net.contains(needle), "{needle} missing from\n{net}");
    }
    // The ISO attached by apply is the same seed.
    w.cmd(&["apply", "--env", "dev", "--cloudflare-ips", "cf.txt"])
        .run()
        .assert_success();
    let attached = w.sim.model().files[r"D:\Hyper-V\pim-dev\seed.iso"].len();
    assert!(attached > 10_000 && (attached as i64 - iso.len() as i64).abs() < 4096);
}

/// The last `runcmd` entry of a user-data file (the Swarm step), read as YAML.
fn last_runcmd(user_data: &str) -> Vec<String> {
    let doc: Value = serde_yaml_ng::from_str(user_data).expect("user-data is YAML");
    let cmds = doc["runcmd"].as_array().expect("runcmd");
    cmds.last()
        .and_then(Value::as_array)
        .expect("an argv")
        .iter()
        .map(|v| v.as_str().expect("a string").to_string())
        .collect()
}

/// Build dev's seed and return its user-data.
fn seed_user_data(w: &World, token: Option<&str>) -> (String, std::fs::Metadata) {
    let mut cmd = w.cmd(&[
        "seed",
        "--env",
        "dev",
        "--cloudflare-ips",
        "cf.txt",
        "--out",
        "join.iso",
    ]);
    if let Some(t) = token {
        cmd = cmd.env("SWARM_JOIN_TOKEN", t);
    }
    cmd.run().assert_success();
    let meta = std::fs::metadata(w.dir.join("join.iso")).unwrap();
    extract_iso(w.dir.join("join.iso"), w.dir.mkdir("join-extracted"));
    (w.dir.read("join-extracted/user-data"), meta)
}

/// Every file of `iso` into `dir`, read back with xorriso as a guest's tools would see it.
fn extract_iso(iso: std::path::PathBuf, dir: std::path::PathBuf) {
    let st = std::process::Command::new("xorriso")
        .args(["-osirrox", "on", "-indev"])
        .arg(iso)
        .args(["-extract", "/"])
        .arg(dir)
        .output()
        .expect("xorriso");
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
}

#[test]
fn a_vm_that_joins_a_swarm_gets_the_token_as_data_in_a_private_iso() {
    use std::os::unix::fs::PermissionsExt;
    let w = world();
    let config = w.dir.read("infra.toml").replace(
        r#"nameservers = ["1.1.1.1"] }"#,
        r#"nameservers = ["1.1.1.1"], swarm_join = "10.10.0.10:2377" }"#,
    );
    w.dir.write("infra.toml", config);
    // Without the token: a configuration error naming the variable and the key.
    let out = w
        .cmd(&[
            "seed",
            "--env",
            "dev",
            "--cloudflare-ips",
            "cf.txt",
            "--out",
            "x.iso",
        ])
        .run();
    out.assert_code(78);
    assert!(
        out.stderr.contains("SWARM_JOIN_TOKEN") && out.stderr.contains("env.dev.vm.swarm_join"),
        "{out}"
    );
    let token = "SWMTKN-1-abc'$(reboot)`x`;\"q";
    let (user_data, meta) = seed_user_data(&w, Some(token));
    assert_eq!(
        meta.permissions().mode() & 0o777,
        0o600,
        "the ISO holds a secret"
    );
    let swarm = last_runcmd(&user_data);
    assert!(
        swarm[2].ends_with(r#"docker swarm join --advertise-addr "$1" --token "$2" "$3""#),
        "{swarm:?}"
    );
    assert_eq!(
        swarm[3..],
        ["swarm-join", "10.10.0.30", token, "10.10.0.10:2377"],
        "every value a positional parameter, the token byte for byte"
    );
    assert!(!swarm[2].contains("SWMTKN"), "no value in the script text");
}

#[test]
fn seeds_refuse_an_empty_range_list() {
    let w = world();
    w.dir.write("empty.txt", "\n");
    let out = w
        .cmd(&[
            "seed",
            "--env",
            "dev",
            "--cloudflare-ips",
            "empty.txt",
            "--out",
            "x.iso",
        ])
        .run();
    out.assert_code(65);
}

#[test]
fn a_disk_grows_in_place_and_the_rdp_rule_comes_and_goes_with_the_config() {
    let w = world();
    w.cmd(&["apply", "--cloudflare-ips", "cf.txt", "--yes=prod"])
        .run()
        .assert_success();
    let config = w.dir.read("infra.toml");
    let grown = config
        .replace(r#"disk = "20GiB""#, r#"disk = "30GiB""#)
        .replace("state_timeout = 30\n", "state_timeout = 30\nrdp = true\n");
    assert_ne!(grown, config);
    w.dir.write("infra.toml", &grown);
    let steps = w.steps(&[]);
    assert_eq!(
        actions(&steps),
        ["pimops-rdp set_firewall_rule", "pim-dev resize_disk"]
    );
    assert!(
        steps.iter().all(|s| s["requires_off"] == false),
        "{steps:?}"
    );
    w.cmd(&["apply"]).run().assert_success();
    {
        let m = w.sim.model();
        let dev = m.vm("pim-dev").expect("pim-dev");
        assert_eq!(dev.state, "Running", "grown without a restart");
        assert_eq!(m.vhds[&dev.disks[0]].size, 30 * GIB);
        let rdp = m
            .rules
            .iter()
            .find(|r| r.name == "pimops-rdp")
            .expect("the RDP rule");
        assert_eq!(
            (rdp.enabled, rdp.action.as_str(), rdp.local_port.clone()),
            (true, "Allow", vec!["3389".to_string()])
        );
        let mut from = rdp.remote_address.clone();
        from.sort();
        assert_eq!(from, ["198.51.100.7/32", "203.0.113.0/24"]);
    }
    assert!(w.steps(&[]).is_empty());

    // RDP off again: hv-provision's rule is removed.
    w.dir.write("infra.toml", grown.replace("rdp = true\n", ""));
    assert_eq!(actions(&w.steps(&[])), ["pimops-rdp remove_firewall_rule"]);
    w.cmd(&["apply"]).run().assert_success();
    assert!(w.sim.model().rules.iter().all(|r| r.name != "pimops-rdp"));
    assert!(w.steps(&[]).is_empty());
}

#[test]
fn a_terminal_gets_the_plan_as_lines_that_say_which_need_the_vm_off() {
    let w = world();
    w.cmd(&["apply", "--env", "dev", "--cloudflare-ips", "cf.txt"])
        .run()
        .assert_success();
    w.write_config("dev", 4, "4GiB", "00:15:5D:0A:00:30");
    let line = format!(
        "{} --config {} plan --env dev",
        env!("CARGO_BIN_EXE_hv-provision"),
        w.dir.join("infra.toml").display()
    );
    let out = TestCommand::new(require_program("script"))
        .env("TERM", "xterm")
        .env("NO_COLOR", "1")
        .args(["-qec", &line, "/dev/null"])
        .current_dir(w.dir.path())
        .run();
    out.assert_success();
    let screen = out.stdout.replace("\r\n", "\n");
    let lines: Vec<&str> = screen.lines().map(str::trim).collect();
    assert!(
        lines.contains(&"~ pim-dev stop: \"Running\" -> \"Off\""),
        "{screen}"
    );
    assert!(
        lines.contains(&"~ pim-dev set_cpus: 2 -> 4 (needs the VM off)"),
        "{screen}"
    );
    assert!(lines.contains(&"3 step(s), 0 conflict(s)."), "{screen}");
    assert!(
        !screen.contains("\"type\""),
        "not JSON on a terminal: {screen}"
    );
}
