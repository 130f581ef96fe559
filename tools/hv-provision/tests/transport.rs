//! The PowerShell transport through a real sshd to the simulator: hostile values arrive as
//! data, exactly, and PowerShell errors come back with the cmdlet's message.

mod common;

use common::hv_code;
use pimops::hyperv::{scripts, HostClient};
use pimops::inventory::Inventory;
use pimops_test_support::hyperv_simulator::{HyperVSimulator, Model};
use serde_json::json;

const BASE: &str = r"D:\Images\base.vhdx";

fn client(sim: &HyperVSimulator) -> HostClient {
    let s = sim.sshd();
    let text = format!(
        "project = \"pim\"\n[hyperv]\nhost = \"127.0.0.1\"\nport = {}\nuser = \"{}\"\nidentity = \"{}\"\nknown_hosts = \"{}\"\nswitch = \"External\"\nvm_dir = 'D:\\VMs'\nbase_vhdx = '{BASE}'\n",
        s.port(),
        s.user(),
        s.identity().display(),
        s.known_hosts().display()
    );
    let inv = Inventory::from_str(&text, "infra.toml").expect("inventory");
    HostClient::connect(inv.hyperv().expect("[hyperv]")).expect("connecting")
}

#[test]
fn hostile_values_arrive_as_data_and_errors_name_the_cmdlet() {
    let sim = HyperVSimulator::start(Model::new("External", BASE), hv_code());
    let host = client(&sim);
    let hostile = "D:\\x'; Remove-VM * -Force; '\u{2019}$(Stop-Computer)`\n\"@'#";
    let r = host
        .run(
            &scripts::CREATE_VM,
            &json!({ "name": "pim-dev", "generation": 2, "memory_bytes": 1u64 << 32, "vm_dir": hostile,
                     "switch": "External", "notes": hostile, "cpus": 2, "mac": "00155D0A0030" }),
        )
        .expect("create-vm");
    let id = r["id"].as_str().expect("id").to_string();
    {
        let m = sim.model();
        let vm = m.vm("pim-dev").expect("created");
        assert_eq!((vm.path.as_str(), vm.notes.as_str()), (hostile, hostile));
    }
    sim.edit_vm("pim-dev", |v| v.state = "Running".into());
    let e = host
        .run(&scripts::SET_PROCESSOR, &json!({ "id": id, "cpus": 4 }))
        .expect_err("a running VM refuses a processor change");
    assert!(
        e.to_string().starts_with(
            "host script set-processor: Set-VMProcessor: 'pim-dev' failed to modify settings"
        ),
        "{e}"
    );
    assert_eq!(e.exit_code().code(), 1);
    let state = host
        .read_state(
            &["pim-dev".into(), hostile.into()],
            &["OpenSSH-Server-In-TCP".into()],
            BASE,
        )
        .expect("read-state");
    assert_eq!(state.vms.len(), 1);
    assert_eq!(state.vms[0].notes, hostile);
    assert!(state.base_vhdx);
    assert_eq!(state.rules[0].remote_address, ["Any"]);
}

/// The simulator runs hv-provision's scripts only as they are: a script with the right
/// name and a spliced-in command is refused, and nothing changes on the host.
#[test]
fn a_script_that_is_not_the_fixed_text_is_refused_by_the_host() {
    let sim = HyperVSimulator::start(Model::new("External", BASE), hv_code());
    let host = client(&sim);
    let tampered = scripts::Script {
        name: scripts::CREATE_VM.name,
        text: Box::leak(
            format!("{}\nStop-Computer -Force\n", scripts::CREATE_VM.text).into_boxed_str(),
        ),
    };
    let e = host
        .run(
            &tampered,
            &json!({ "name": "pim-dev", "generation": 2, "memory_bytes": 1u64 << 32, "vm_dir": "D:\\vms",
                     "switch": "External", "notes": "", "cpus": 2, "mac": "00155D0A0030" }),
        )
        .expect_err("refused");
    assert!(
        e.to_string().contains("not hv-provision's fixed text"),
        "{e}"
    );
    assert!(sim.model().vm("pim-dev").is_none(), "nothing was created");
}
