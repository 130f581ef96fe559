//! A simulator of a Windows Hyper-V host behind a real sshd, for hv-provision's tests.
//!
//! sshd runs a relay script as its `ForceCommand`: it hands the command line the client
//! asked for (`SSH_ORIGINAL_COMMAND`) and its stdin to the simulator through a spool
//! directory and prints what the simulator answers. The simulator itself is a thread in the
//! test process, so a test can look at and change its model (VMs, disks, switches, files,
//! firewall rules) directly, and needs no extra binary.
//!
//! What the simulator checks, as the host would: the command is `powershell` with
//! `-EncodedCommand` (UTF-16LE base64) and the line fits cmd's 8,191 characters; the
//! encoded bootstrap is hv-provision's, character for character, and reads a script and a
//! data line from stdin; the script is one of hv-provision's fixed scripts, named by its
//! `# pimops-hv: NAME` first line and equal to that script's text, so that a value spliced
//! into code would be refused here too. It then applies the data to the model
//! with Hyper-V's rules: processor count, memory, static MAC, firmware, checkpoint type and
//! automatic actions change only while the VM is off; a DVD drive is added to a
//! Generation 2 VM only while off; switches and parent disks must exist; disks only grow;
//! VM names are not unique (as in Hyper-V: the scripts guard against duplicates); state
//! transitions Off ↔ Running. Answers have the bootstrap's shape: a banner line, then one
//! JSON document between `===Begin-Output===` and `===End-Output===`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};

use crate::sshd::Sshd;

/// cmd.exe's command-line limit.
const CMD_LIMIT: usize = 8191;

pub const GIB: u64 = 1 << 30;

/// A VM as Hyper-V keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct SimVm {
    pub id: String,
    pub name: String,
    /// `Off` or `Running`.
    pub state: String,
    pub generation: u8,
    pub cpus: u64,
    pub memory_startup: u64,
    pub dynamic_memory: bool,
    pub checkpoint_type: String,
    pub automatic_start_action: String,
    pub automatic_stop_action: String,
    pub notes: String,
    pub path: String,
    /// Paths of attached virtual hard disks.
    pub disks: Vec<String>,
    pub adapters: Vec<SimAdapter>,
    /// DVD drives: the ISO path or "" for an empty drive.
    pub dvds: Vec<String>,
    pub secure_boot: String,
    pub secure_boot_template: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SimAdapter {
    pub switch: String,
    pub mac: String,
    pub dynamic_mac: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SimVhd {
    pub parent: String,
    pub vhd_type: String,
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SimRule {
    pub name: String,
    pub display_name: String,
    pub group: String,
    pub enabled: bool,
    pub direction: String,
    pub action: String,
    pub protocol: String,
    pub local_port: Vec<String>,
    pub remote_address: Vec<String>,
}

/// The code the simulated host runs: hv-provision's bootstrap and its fixed scripts by
/// name. Anything else is refused.
#[derive(Debug, Clone, Default)]
pub struct FixedCode {
    pub bootstrap: String,
    pub scripts: BTreeMap<String, String>,
}

impl FixedCode {
    pub fn new<'a>(bootstrap: &str, scripts: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        FixedCode {
            bootstrap: bootstrap.to_string(),
            scripts: scripts
                .into_iter()
                .map(|(n, t)| (n.to_string(), t.to_string()))
                .collect(),
        }
    }
}

/// The host's state.
#[derive(Debug, Clone, Default)]
pub struct Model {
    pub vms: Vec<SimVm>,
    pub vhds: BTreeMap<String, SimVhd>,
    /// Other files (seed ISOs) by path.
    pub files: BTreeMap<String, Vec<u8>>,
    pub switches: Vec<String>,
    pub rules: Vec<SimRule>,
    /// Names of the scripts run, in order.
    pub calls: Vec<String>,
    /// The only code it runs.
    pub code: FixedCode,
    next_id: u64,
}

impl Model {
    /// A host with one switch, a base disk, and Windows' built-in SSH and RDP rules open
    /// to anyone.
    pub fn new(switch: &str, base_vhdx: &str) -> Model {
        let mut m = Model {
            switches: vec![switch.to_string()],
            ..Model::default()
        };
        m.vhds.insert(
            base_vhdx.to_string(),
            SimVhd {
                parent: String::new(),
                vhd_type: "Dynamic".into(),
                size: 2 * GIB,
            },
        );
        for (name, port, proto) in [
            ("OpenSSH-Server-In-TCP", "22", "TCP"),
            ("RemoteDesktop-UserMode-In-TCP", "3389", "TCP"),
            ("RemoteDesktop-UserMode-In-UDP", "3389", "UDP"),
        ] {
            m.rules.push(SimRule {
                name: name.into(),
                display_name: name.into(),
                group: "builtin".into(),
                enabled: true,
                direction: "Inbound".into(),
                action: "Allow".into(),
                protocol: proto.into(),
                local_port: vec![port.into()],
                remote_address: vec!["Any".into()],
            });
        }
        m
    }

    pub fn vm(&self, name: &str) -> Option<&SimVm> {
        self.vms.iter().find(|v| v.name == name)
    }

    pub fn vm_mut(&mut self, name: &str) -> Option<&mut SimVm> {
        self.vms.iter_mut().find(|v| v.name == name)
    }

    pub fn rule(&self, name: &str) -> Option<&SimRule> {
        self.rules.iter().find(|r| r.name == name)
    }

    /// Add a VM as if made by hand (e.g. a Generation 1 VM, or a duplicate name).
    pub fn add_vm(&mut self, name: &str, generation: u8) -> String {
        let id = self.new_id();
        self.vms.push(SimVm {
            id: id.clone(),
            name: name.into(),
            state: "Off".into(),
            generation,
            cpus: 1,
            memory_startup: GIB,
            dynamic_memory: true,
            checkpoint_type: "Standard".into(),
            automatic_start_action: "StartIfRunning".into(),
            automatic_stop_action: "Save".into(),
            notes: String::new(),
            path: String::new(),
            disks: Vec::new(),
            adapters: vec![SimAdapter {
                switch: String::new(),
                mac: "000000000000".into(),
                dynamic_mac: true,
            }],
            dvds: Vec::new(),
            secure_boot: if generation == 2 {
                "On".into()
            } else {
                String::new()
            },
            secure_boot_template: if generation == 2 {
                "MicrosoftWindows".into()
            } else {
                String::new()
            },
        });
        id
    }

    fn new_id(&mut self) -> String {
        self.next_id += 1;
        format!("6c1f2a8e-0000-4000-8000-{:012x}", self.next_id)
    }
}

/// The simulator and the sshd in front of it. Stopped on drop.
pub struct HyperVSimulator {
    sshd: Sshd,
    model: Arc<Mutex<Model>>,
    stop: Arc<AtomicBool>,
    worker: Option<thread::JoinHandle<()>>,
    _spool: tempfile::TempDir,
}

impl HyperVSimulator {
    /// Start sshd with the relay as its ForceCommand, serving `model` and running only
    /// `code`.
    pub fn start(mut model: Model, code: FixedCode) -> HyperVSimulator {
        model.code = code;
        let spool = tempfile::Builder::new()
            .prefix("pimops-hyperv-")
            .tempdir()
            .expect("creating the simulator's spool dir");
        let relay = spool.path().join("relay.sh");
        crate::command::write_executable(&relay, relay_script(spool.path()));
        let sshd = Sshd::start_with_config(&format!("ForceCommand {}\n", relay.display()));
        let model = Arc::new(Mutex::new(model));
        let stop = Arc::new(AtomicBool::new(false));
        let worker = {
            let (model, stop, dir) = (
                Arc::clone(&model),
                Arc::clone(&stop),
                spool.path().to_path_buf(),
            );
            thread::spawn(move || serve(&dir, &model, &stop))
        };
        HyperVSimulator {
            sshd,
            model,
            stop,
            worker: Some(worker),
            _spool: spool,
        }
    }

    pub fn sshd(&self) -> &Sshd {
        &self.sshd
    }

    /// The model, to look at or change between commands.
    pub fn model(&self) -> MutexGuard<'_, Model> {
        self.model.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Change the VM named `name` in the model; panics if there is none.
    pub fn edit_vm(&self, name: &str, f: impl FnOnce(&mut SimVm)) {
        let mut m = self.model();
        let vm = m
            .vm_mut(name)
            .unwrap_or_else(|| panic!("the simulator has no VM {name}"));
        f(vm);
    }

    /// Script names run since the last call.
    pub fn take_calls(&self) -> Vec<String> {
        std::mem::take(&mut self.model().calls)
    }
}

impl Drop for HyperVSimulator {
    fn drop(&mut self) {
        self.sshd.stop();
        self.stop.store(true, Ordering::SeqCst);
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

/// The relay: one request directory per command; `ready` and `done` are created last so
/// that neither side reads a half-written file.
fn relay_script(spool: &Path) -> String {
    format!(
        r#"#!/bin/sh
set -e
req=$(mktemp -d '{spool}/req.XXXXXX')
printf '%s' "$SSH_ORIGINAL_COMMAND" > "$req/command"
cat > "$req/stdin"
: > "$req/ready"
while [ ! -e "$req/done" ]; do sleep 0.01; done
cat "$req/stdout"
cat "$req/stderr" >&2
exit "$(cat "$req/status")"
"#,
        spool = spool.display()
    )
}

fn serve(dir: &Path, model: &Mutex<Model>, stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        let mut pending: Vec<PathBuf> = fs::read_dir(dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.join("ready").exists() && !p.join("taken").exists())
                    .collect()
            })
            .unwrap_or_default();
        pending.sort();
        for req in pending {
            let _ = fs::write(req.join("taken"), "");
            let command = fs::read_to_string(req.join("command")).unwrap_or_default();
            let stdin = fs::read(req.join("stdin")).unwrap_or_default();
            let (stdout, stderr, status) = {
                let mut m = model.lock().unwrap_or_else(|p| p.into_inner());
                handle(&mut m, &command, &stdin)
            };
            let _ = fs::write(req.join("stdout"), stdout);
            let _ = fs::write(req.join("stderr"), stderr);
            let _ = fs::write(req.join("status"), status.to_string());
            let _ = fs::write(req.join("done"), "");
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// One command: (stdout, stderr, exit status), as powershell.exe behind Windows OpenSSH.
fn handle(m: &mut Model, command: &str, stdin: &[u8]) -> (String, String, i32) {
    let words: Vec<&str> = command.split_whitespace().collect();
    let Some(&program) = words.first() else {
        return (String::new(), "no command\r\n".into(), 1);
    };
    if program != "powershell" {
        return (
            String::new(),
            format!("'{program}' is not recognized as an internal or external command,\r\noperable program or batch file.\r\n"),
            1,
        );
    }
    if command.len() > CMD_LIMIT {
        return (String::new(), "The command line is too long.\r\n".into(), 1);
    }
    let Some(encoded) = words
        .iter()
        .position(|w| w.eq_ignore_ascii_case("-EncodedCommand"))
        .and_then(|i| words.get(i + 1))
    else {
        return (
            String::new(),
            "simulator: expected -EncodedCommand\r\n".into(),
            1,
        );
    };
    let Some(bootstrap) = decode_utf16_b64(encoded) else {
        return (
            String::new(),
            "Cannot process the command because the value specified with -EncodedCommand is not properly encoded. The value must be Base64 encoded.\r\n".into(),
            1,
        );
    };
    let reply = match run_bootstrap(m, &bootstrap, stdin) {
        Ok(result) => json!({ "result": result }),
        Err(e) => {
            json!({ "error": { "message": e.message, "command": e.command, "category": e.category } })
        }
    };
    (
        format!("Windows PowerShell\r\nCopyright (C) Microsoft Corporation. All rights reserved.\r\n===Begin-Output===\r\n{reply}\r\n===End-Output===\r\n"),
        String::new(),
        0,
    )
}

fn decode_utf16_b64(s: &str) -> Option<String> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(s).ok()?;
    if bytes.len() % 2 != 0 {
        return None;
    }
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    String::from_utf16(&units).ok()
}

/// A PowerShell error record as the bootstrap reports it.
#[derive(Debug)]
struct PsError {
    message: String,
    command: String,
    category: String,
}

fn ps_err(command: &str, category: &str, message: impl Into<String>) -> PsError {
    PsError {
        message: message.into(),
        command: command.into(),
        category: category.into(),
    }
}

type PsResult<T> = Result<T, PsError>;

fn run_bootstrap(m: &mut Model, bootstrap: &str, stdin: &[u8]) -> PsResult<Value> {
    if bootstrap != m.code.bootstrap {
        return Err(ps_err(
            "",
            "ParserError",
            "simulator: the encoded command is not hv-provision's bootstrap",
        ));
    }
    let text = String::from_utf8_lossy(stdin);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if lines.len() != 2 {
        return Err(ps_err(
            "",
            "OperationStopped",
            "pimops: expected two lines on stdin: the script and its data",
        ));
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let script = b64
        .decode(lines[0])
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| {
            ps_err(
                "",
                "InvalidArgument",
                "Exception calling \"FromBase64String\": The input is not a valid Base-64 string",
            )
        })?;
    let data: Value = b64
        .decode(lines[1])
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| ps_err("ConvertFrom-Json", "ParserError", "Invalid JSON primitive"))?;
    let name = script
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("# pimops-hv: "))
        .ok_or_else(|| {
            ps_err(
                "",
                "ParserError",
                "simulator: unknown script (no # pimops-hv: header)",
            )
        })?
        .to_string();
    if m.code.scripts.get(&name) != Some(&script) {
        return Err(ps_err(
            "",
            "ParserError",
            format!("simulator: the script {name:?} is not hv-provision's fixed text"),
        ));
    }
    m.calls.push(name.clone());
    let d = Data(&data);
    match name.as_str() {
        "read-state" => read_state(m, &d),
        "create-vm" => create_vm(m, &d),
        "add-disk" => add_disk(m, &d),
        "resize-disk" => resize_disk(m, &d),
        "set-processor" => with_off_vm(m, &d, "Set-VMProcessor", |vm, d| {
            vm.cpus = d.u64("cpus")?;
            Ok(json!({ "cpus": vm.cpus }))
        }),
        "set-memory" => with_off_vm(m, &d, "Set-VMMemory", |vm, d| {
            let bytes = d.u64("memory_bytes")?;
            if bytes % (2 << 20) != 0 {
                return Err(ps_err(
                    "Set-VMMemory",
                    "InvalidArgument",
                    "memory must be a multiple of 2 MB",
                ));
            }
            vm.memory_startup = bytes;
            vm.dynamic_memory = false;
            Ok(json!({ "memory_bytes": bytes }))
        }),
        "connect-switch" => connect_switch(m, &d),
        "set-mac" => with_off_vm(m, &d, "Set-VMNetworkAdapter", |vm, d| {
            let mac = d.str("mac")?;
            if mac.len() != 12 || !mac.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(ps_err(
                    "Set-VMNetworkAdapter",
                    "InvalidArgument",
                    format!("Invalid MAC address: {mac}"),
                ));
            }
            for a in &mut vm.adapters {
                a.mac = mac.to_uppercase();
                a.dynamic_mac = false;
            }
            Ok(json!({ "mac": mac }))
        }),
        "set-firmware" => with_off_vm(m, &d, "Set-VMFirmware", |vm, d| {
            if vm.generation != 2 {
                return Err(ps_err(
                    "Get-VMFirmware",
                    "InvalidArgument",
                    "Generation 1 virtual machines do not support this operation.",
                ));
            }
            if d.bool("secure_boot")? {
                vm.secure_boot = "On".into();
                vm.secure_boot_template = d.str("template")?.to_string();
            } else {
                vm.secure_boot = "Off".into();
            }
            Ok(json!({ "secure_boot": vm.secure_boot == "On" }))
        }),
        "set-options" => with_off_vm(m, &d, "Set-VM", |vm, d| {
            vm.checkpoint_type = one_of(
                d.str("checkpoint_type")?,
                &["Disabled", "Production", "ProductionOnly", "Standard"],
                "CheckpointType",
            )?;
            vm.automatic_start_action = one_of(
                d.str("automatic_start_action")?,
                &["Nothing", "StartIfRunning", "Start"],
                "AutomaticStartAction",
            )?;
            vm.automatic_stop_action = one_of(
                d.str("automatic_stop_action")?,
                &["TurnOff", "Save", "ShutDown"],
                "AutomaticStopAction",
            )?;
            Ok(json!({ "checkpoint_type": vm.checkpoint_type }))
        }),
        "attach-seed" => attach_seed(m, &d),
        "start-vm" => {
            let vm = vm_by_id(m, &d)?;
            if vm.state != "Running" {
                vm.state = "Running".into();
            }
            Ok(json!({ "state": vm.state }))
        }
        "stop-vm" => {
            let vm = vm_by_id(m, &d)?;
            vm.state = "Off".into();
            Ok(json!({ "state": vm.state }))
        }
        "remove-vm" => remove_vm(m, &d),
        "set-firewall-rule" => set_rule(m, &d),
        "disable-firewall-rule" => {
            let name = d.str("name")?.to_string();
            let rule = rule_mut(m, &name, "Disable-NetFirewallRule")?;
            rule.enabled = false;
            Ok(json!({ "name": name }))
        }
        "remove-firewall-rule" => {
            let name = d.str("name")?.to_string();
            rule_mut(m, &name, "Remove-NetFirewallRule")?;
            m.rules.retain(|r| r.name != name);
            Ok(json!({ "name": name }))
        }
        other => Err(ps_err(
            "",
            "ParserError",
            format!("simulator: unknown script {other:?}"),
        )),
    }
}

/// `$d` as the scripts use it: a missing property is `$null`, which the cmdlets reject.
struct Data<'a>(&'a Value);

impl Data<'_> {
    fn get(&self, k: &str) -> PsResult<&Value> {
        self.0.get(k).filter(|v| !v.is_null()).ok_or_else(|| {
            ps_err(
                "",
                "InvalidData",
                format!("Cannot bind argument to parameter because '{k}' is null."),
            )
        })
    }
    fn str(&self, k: &str) -> PsResult<&str> {
        self.get(k)?
            .as_str()
            .ok_or_else(|| ps_err("", "InvalidArgument", format!("{k}: expected a string")))
    }
    fn u64(&self, k: &str) -> PsResult<u64> {
        self.get(k)?
            .as_u64()
            .ok_or_else(|| ps_err("", "InvalidArgument", format!("{k}: expected a number")))
    }
    fn bool(&self, k: &str) -> PsResult<bool> {
        self.get(k)?
            .as_bool()
            .ok_or_else(|| ps_err("", "InvalidArgument", format!("{k}: expected a boolean")))
    }
    fn strings(&self, k: &str) -> PsResult<Vec<String>> {
        let v = self.get(k)?;
        // ConvertFrom-Json turns a one-element array into a scalar under @(): same here.
        let items = match v {
            Value::Array(a) => a.clone(),
            other => vec![other.clone()],
        };
        items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| ps_err("", "InvalidArgument", format!("{k}: expected strings")))
            })
            .collect()
    }
}

fn one_of(v: &str, allowed: &[&str], param: &str) -> PsResult<String> {
    allowed
        .iter()
        .find(|a| a.eq_ignore_ascii_case(v))
        .map(|a| a.to_string())
        .ok_or_else(|| {
            ps_err(
                "Set-VM",
                "InvalidArgument",
                format!("Cannot bind parameter '{param}'. Cannot convert value \"{v}\"."),
            )
        })
}

fn vm_by_id<'m>(m: &'m mut Model, d: &Data) -> PsResult<&'m mut SimVm> {
    let id = d.str("id")?;
    m.vms.iter_mut().find(|v| v.id == id).ok_or_else(|| {
        ps_err(
            "Get-VM",
            "InvalidArgument",
            format!("Hyper-V was unable to find a virtual machine with id \"{id}\"."),
        )
    })
}

fn with_off_vm(
    m: &mut Model,
    d: &Data,
    cmdlet: &str,
    f: impl FnOnce(&mut SimVm, &Data) -> PsResult<Value>,
) -> PsResult<Value> {
    let vm = vm_by_id(m, d)?;
    if vm.state != "Off" {
        return Err(ps_err(
            cmdlet,
            "InvalidOperation",
            format!("'{}' failed to modify settings: the operation cannot be performed while the virtual machine is in its current state ({}).", vm.name, vm.state),
        ));
    }
    f(vm, d)
}

fn read_state(m: &Model, d: &Data) -> PsResult<Value> {
    let names = d.strings("names")?;
    let vms: Vec<Value> = m
        .vms
        .iter()
        .filter(|v| names.contains(&v.name))
        .map(|v| {
            let disks: Vec<Value> = v
                .disks
                .iter()
                .map(|p| {
                    let vhd = m.vhds.get(p);
                    json!({
                        "path": p,
                        "controller": if v.generation == 2 { "SCSI" } else { "IDE" },
                        "parent": vhd.map(|x| x.parent.clone()).unwrap_or_default(),
                        "vhd_type": vhd.map(|x| x.vhd_type.clone()).unwrap_or_default(),
                        "size": vhd.map(|x| x.size).unwrap_or(0),
                    })
                })
                .collect();
            let adapters: Vec<Value> = v
                .adapters
                .iter()
                .map(|a| json!({ "switch": a.switch, "mac": a.mac, "dynamic_mac": a.dynamic_mac }))
                .collect();
            json!({
                "id": v.id, "name": v.name, "state": v.state, "generation": v.generation,
                "cpus": v.cpus, "memory_startup": v.memory_startup, "dynamic_memory": v.dynamic_memory,
                "checkpoint_type": v.checkpoint_type,
                "automatic_start_action": v.automatic_start_action,
                "automatic_stop_action": v.automatic_stop_action,
                "notes": v.notes, "disks": disks, "adapters": adapters, "dvds": v.dvds,
                "secure_boot": v.secure_boot, "secure_boot_template": v.secure_boot_template,
            })
        })
        .collect();
    let wanted = d.strings("rules")?;
    let rules: Vec<Value> = m
        .rules
        .iter()
        .filter(|r| wanted.contains(&r.name))
        .map(|r| {
            json!({
                "name": r.name, "enabled": r.enabled, "direction": r.direction, "action": r.action,
                "protocol": r.protocol, "local_port": r.local_port, "remote_address": r.remote_address,
            })
        })
        .collect();
    let base = d.str("base_vhdx")?;
    Ok(json!({
        "vms": vms,
        "rules": rules,
        "switches": m.switches,
        "base_vhdx": m.vhds.contains_key(base),
    }))
}

fn create_vm(m: &mut Model, d: &Data) -> PsResult<Value> {
    let name = d.str("name")?.to_string();
    if m.vm(&name).is_some() {
        return Err(ps_err(
            "",
            "OperationStopped",
            format!("a VM named {name} already exists"),
        ));
    }
    let generation = d.u64("generation")?;
    if !(1..=2).contains(&generation) {
        return Err(ps_err(
            "New-VM",
            "InvalidArgument",
            "The generation must be 1 or 2.",
        ));
    }
    let memory = d.u64("memory_bytes")?;
    if memory < 32 << 20 || memory % (2 << 20) != 0 {
        return Err(ps_err(
            "New-VM",
            "InvalidArgument",
            "Invalid startup memory amount.",
        ));
    }
    let switch = d.str("switch")?.to_string();
    if !m.switches.contains(&switch) {
        return Err(ps_err(
            "New-VM",
            "ObjectNotFound",
            format!("Hyper-V was unable to find a virtual switch with name \"{switch}\"."),
        ));
    }
    let mac = d.str("mac")?.to_uppercase();
    let id = m.new_id();
    m.vms.push(SimVm {
        id: id.clone(),
        name,
        state: "Off".into(),
        generation: generation as u8,
        cpus: d.u64("cpus")?,
        memory_startup: memory,
        dynamic_memory: false,
        // New-VM's defaults: the automatic actions and checkpoint type are set later.
        checkpoint_type: "Standard".into(),
        automatic_start_action: "StartIfRunning".into(),
        automatic_stop_action: "Save".into(),
        notes: d.str("notes")?.to_string(),
        path: d.str("vm_dir")?.to_string(),
        disks: Vec::new(),
        adapters: vec![SimAdapter {
            switch,
            mac,
            dynamic_mac: false,
        }],
        dvds: Vec::new(),
        secure_boot: if generation == 2 {
            "On".into()
        } else {
            String::new()
        },
        secure_boot_template: if generation == 2 {
            "MicrosoftWindows".into()
        } else {
            String::new()
        },
    });
    Ok(json!({ "id": id }))
}

fn add_disk(m: &mut Model, d: &Data) -> PsResult<Value> {
    let path = d.str("path")?.to_string();
    let parent = d.str("parent")?.to_string();
    let size = d.u64("size_bytes")?;
    vm_by_id(m, d)?;
    if !m.vhds.contains_key(&path) {
        let Some(base) = m.vhds.get(&parent) else {
            return Err(ps_err(
                "New-VHD",
                "ObjectNotFound",
                format!("The system cannot find the file specified: '{parent}'"),
            ));
        };
        let base_size = base.size;
        m.vhds.insert(
            path.clone(),
            SimVhd {
                parent,
                vhd_type: "Differencing".into(),
                size: base_size,
            },
        );
    }
    if let Some(vhd) = m.vhds.get_mut(&path) {
        vhd.size = vhd.size.max(size);
    }
    let vm = vm_by_id(m, d)?;
    if vm.disks.contains(&path) {
        return Err(ps_err(
            "Add-VMHardDiskDrive",
            "ResourceExists",
            format!("The disk '{path}' is already attached."),
        ));
    }
    vm.disks.push(path.clone());
    Ok(json!({ "path": path }))
}

fn resize_disk(m: &mut Model, d: &Data) -> PsResult<Value> {
    let path = d.str("path")?;
    let size = d.u64("size_bytes")?;
    let vhd = m.vhds.get_mut(path).ok_or_else(|| {
        ps_err(
            "Resize-VHD",
            "ObjectNotFound",
            format!("The system cannot find the file specified: '{path}'"),
        )
    })?;
    if size < vhd.size {
        return Err(ps_err("Resize-VHD", "InvalidArgument", "The size of a virtual hard disk can only be reduced to the minimum size of its partitions."));
    }
    vhd.size = size;
    Ok(json!({ "size": size }))
}

fn connect_switch(m: &mut Model, d: &Data) -> PsResult<Value> {
    let switch = d.str("switch")?.to_string();
    if !m.switches.contains(&switch) {
        return Err(ps_err(
            "Connect-VMNetworkAdapter",
            "ObjectNotFound",
            format!("Hyper-V was unable to find a virtual switch with name \"{switch}\"."),
        ));
    }
    let vm = vm_by_id(m, d)?;
    for a in &mut vm.adapters {
        a.switch = switch.clone();
    }
    Ok(json!({ "switch": switch }))
}

fn attach_seed(m: &mut Model, d: &Data) -> PsResult<Value> {
    let path = d.str("path")?.to_string();
    let iso = base64::engine::general_purpose::STANDARD
        .decode(d.str("iso")?)
        .map_err(|_| {
            ps_err(
                "",
                "InvalidArgument",
                "Exception calling \"FromBase64String\": The input is not a valid Base-64 string",
            )
        })?;
    let bytes = iso.len();
    let vm = vm_by_id(m, d)?;
    if !vm.dvds.contains(&path) {
        if let Some(empty) = vm.dvds.iter_mut().find(|p| p.is_empty()) {
            *empty = path.clone();
        } else if vm.generation == 2 && vm.state != "Off" {
            return Err(ps_err("Add-VMDvdDrive", "InvalidOperation", format!("'{}' failed to add device 'Virtual CD/DVD Disk': the virtual machine must be off.", vm.name)));
        } else {
            vm.dvds.push(path.clone());
        }
    }
    m.files.insert(path.clone(), iso);
    Ok(json!({ "path": path, "bytes": bytes }))
}

fn remove_vm(m: &mut Model, d: &Data) -> PsResult<Value> {
    let id = vm_by_id(m, d)?.id.clone();
    m.vms.retain(|v| v.id != id);
    let mut removed = Vec::new();
    for path in d.strings("files")? {
        if m.vhds.remove(&path).is_some() || m.files.remove(&path).is_some() {
            removed.push(path);
        }
    }
    Ok(json!({ "removed": removed }))
}

fn rule_mut<'m>(m: &'m mut Model, name: &str, cmdlet: &str) -> PsResult<&'m mut SimRule> {
    m.rules
        .iter_mut()
        .find(|r| r.name == name)
        .ok_or_else(|| ps_err(cmdlet, "ObjectNotFound", format!("No MSFT_NetFirewallRule objects found with property 'Name' equal to '{name}'.  Verify the value of the property and retry.")))
}

fn set_rule(m: &mut Model, d: &Data) -> PsResult<Value> {
    let name = d.str("name")?.to_string();
    let protocol = one_of(d.str("protocol")?, &["TCP", "UDP"], "Protocol")?;
    let port = d.get("port")?.to_string().trim_matches('"').to_string();
    let remote_address = d.strings("remote_address")?;
    if remote_address.is_empty() {
        return Err(ps_err(
            "New-NetFirewallRule",
            "InvalidArgument",
            "The address filter is empty.",
        ));
    }
    let exists = m.rule(&name).is_some();
    if !exists {
        m.rules.push(SimRule {
            name: name.clone(),
            display_name: d.str("display_name")?.to_string(),
            group: d.str("group")?.to_string(),
            enabled: true,
            direction: "Inbound".into(),
            action: "Allow".into(),
            protocol,
            local_port: vec![port],
            remote_address,
        });
    } else {
        let rule = rule_mut(m, &name, "Set-NetFirewallRule")?;
        rule.enabled = true;
        rule.direction = "Inbound".into();
        rule.action = "Allow".into();
        rule.protocol = protocol;
        rule.local_port = vec![port];
        rule.remote_address = remote_address;
    }
    Ok(json!({ "name": name }))
}
