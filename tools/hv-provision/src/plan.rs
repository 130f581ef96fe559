//! The diff of the host against the desired state: steps in the order apply runs them.

use pimops::hyperv::state::{FirewallRule, HostState, VmState};
use pimops::inventory::HyperV;
use pimops::output::Record;
use serde_json::{json, Value};

use crate::desired::{self, canonical_address, DesiredRule, DesiredVm, MARKER};

/// One change.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// The env, or `None` for the host itself.
    pub env: Option<String>,
    /// The VM or the firewall rule the step changes.
    pub object: String,
    pub action: &'static str,
    pub from: Value,
    pub to: Value,
    /// The VM must be off for this step.
    pub requires_off: bool,
}

/// Something apply must never do by itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Conflict {
    pub env: Option<String>,
    pub object: String,
    pub message: String,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub steps: Vec<Step>,
    pub conflicts: Vec<Conflict>,
}

impl Step {
    fn vm(d: &DesiredVm, action: &'static str, from: Value, to: Value, requires_off: bool) -> Step {
        Step {
            env: Some(d.env.clone()),
            object: d.name.clone(),
            action,
            from,
            to,
            requires_off,
        }
    }

    pub fn record(&self) -> Record {
        Record::new("step")
            .with("env", self.env.clone().map_or(Value::Null, Value::from))
            .with("object", self.object.clone())
            .with("action", self.action)
            .with("from", self.from.clone())
            .with("to", self.to.clone())
            .with("requires_off", self.requires_off)
    }

    pub fn human(&self) -> String {
        let off = if self.requires_off {
            " (needs the VM off)"
        } else {
            ""
        };
        let change = match (&self.from, &self.to) {
            (Value::Null, Value::Null) => String::new(),
            (Value::Null, to) => format!(": {to}"),
            (from, to) => format!(": {from} -> {to}"),
        };
        format!(
            "{} {} {}{change}{off}",
            sign(self.action),
            self.object,
            self.action
        )
    }
}

fn sign(action: &str) -> &'static str {
    match action {
        "create" | "add_disk" | "attach_seed" | "set_firewall_rule" => "+",
        "remove_firewall_rule" => "-",
        _ => "~",
    }
}

impl Conflict {
    pub fn record(&self) -> Record {
        Record::new("conflict")
            .with("env", self.env.clone().map_or(Value::Null, Value::from))
            .with("object", self.object.clone())
            .with("message", self.message.clone())
    }
}

/// Every step and conflict for `vms` and, when `host` is set, the host firewall.
pub fn plan(hv: &HyperV, vms: &[DesiredVm], state: &HostState, host: bool) -> Plan {
    let mut p = Plan::default();
    if host {
        firewall(hv, state, &mut p);
    }
    for d in vms {
        vm(hv, d, state, &mut p);
    }
    p
}

fn conflict(p: &mut Plan, d: &DesiredVm, message: String) {
    p.conflicts.push(Conflict {
        env: Some(d.env.clone()),
        object: d.name.clone(),
        message,
    });
}

fn vm(hv: &HyperV, d: &DesiredVm, state: &HostState, p: &mut Plan) {
    let found: Vec<&VmState> = state.vms.iter().filter(|v| v.name == d.name).collect();
    let mac = d.vm.mac.hyperv();
    let memory = d.vm.memory.bytes();
    let disk = d.vm.disk.bytes();
    let Some(cur) = found.first().copied() else {
        if !state.switches.contains(&hv.switch) {
            conflict(
                p,
                d,
                format!("the host has no virtual switch {:?}", hv.switch),
            );
            return;
        }
        if !state.base_vhdx {
            conflict(
                p,
                d,
                format!("the base disk {} does not exist on the host", hv.base_vhdx),
            );
            return;
        }
        let create = json!({ "generation": hv.generation.0, "cpus": d.vm.cpus, "memory": memory, "switch": hv.switch, "mac": mac });
        p.steps
            .push(Step::vm(d, "create", Value::Null, create, false));
        p.steps.push(Step::vm(
            d,
            "add_disk",
            Value::Null,
            json!({ "path": d.vhd_path, "size": disk }),
            false,
        ));
        if hv.generation.0 == 2 {
            p.steps.push(Step::vm(
                d,
                "set_firmware",
                Value::Null,
                firmware(hv),
                false,
            ));
        }
        p.steps
            .push(Step::vm(d, "set_options", Value::Null, options(hv), false));
        p.steps.push(Step::vm(
            d,
            "attach_seed",
            Value::Null,
            json!(d.seed_path),
            false,
        ));
        p.steps
            .push(Step::vm(d, "start", Value::Null, json!("Running"), false));
        return;
    };
    if found.len() > 1 {
        conflict(p, d, format!("{} VMs are named {}: Hyper-V names are not unique; remove or rename the others by hand", found.len(), d.name));
        return;
    }
    if !cur.notes.contains(MARKER) {
        conflict(p, d, format!("a VM named {} exists that hv-provision did not create (its Notes lack {MARKER:?}); rename it or set vm.name", d.name));
        return;
    }
    if cur.generation != hv.generation.0 {
        conflict(p, d, format!("generation {} on the host, {} wanted: a generation cannot change; `hv-provision destroy --env {} --yes={}` first, then apply", cur.generation, hv.generation.0, d.env, d.name));
        return;
    }
    if !cur.is_off() && !cur.is_running() {
        conflict(
            p,
            d,
            format!(
                "the VM is {}: bring it to Running or Off by hand",
                cur.state
            ),
        );
        return;
    }
    let mut steps = Vec::new();
    match cur
        .disks
        .iter()
        .find(|x| x.path.eq_ignore_ascii_case(&d.vhd_path))
    {
        None => steps.push(Step::vm(
            d,
            "add_disk",
            Value::Null,
            json!({ "path": d.vhd_path, "size": disk }),
            false,
        )),
        Some(x) if x.size < disk => steps.push(Step::vm(
            d,
            "resize_disk",
            json!(x.size),
            json!(disk),
            false,
        )),
        Some(x) if x.size > disk => {
            conflict(
                p,
                d,
                format!(
                    "the disk is {} bytes, larger than vm.disk ({disk}): disks never shrink",
                    x.size
                ),
            );
            return;
        }
        Some(_) => {}
    }
    if cur.cpus != d.vm.cpus {
        steps.push(Step::vm(
            d,
            "set_cpus",
            json!(cur.cpus),
            json!(d.vm.cpus),
            true,
        ));
    }
    if cur.memory_startup != memory || cur.dynamic_memory {
        steps.push(Step::vm(
            d,
            "set_memory",
            json!(cur.memory_startup),
            json!(memory),
            true,
        ));
    }
    let adapter = cur.adapters.first();
    let cur_switch = adapter.map(|a| a.switch.as_str()).unwrap_or_default();
    if cur_switch != hv.switch {
        if !state.switches.contains(&hv.switch) {
            conflict(
                p,
                d,
                format!("the host has no virtual switch {:?}", hv.switch),
            );
            return;
        }
        steps.push(Step::vm(
            d,
            "connect_switch",
            json!(cur_switch),
            json!(hv.switch),
            false,
        ));
    }
    let cur_mac = adapter
        .map(|a| a.mac.to_ascii_uppercase())
        .unwrap_or_default();
    if cur_mac != mac || adapter.is_some_and(|a| a.dynamic_mac) {
        steps.push(Step::vm(d, "set_mac", json!(cur_mac), json!(mac), true));
    }
    if hv.generation.0 == 2 {
        let cur_fw = json!({ "secure_boot": cur.secure_boot == "On", "template": if cur.secure_boot == "On" { cur.secure_boot_template.as_str() } else { "" } });
        if cur_fw != firmware(hv) {
            steps.push(Step::vm(d, "set_firmware", cur_fw, firmware(hv), true));
        }
    }
    let cur_opts = json!({ "checkpoint_type": cur.checkpoint_type, "automatic_start_action": cur.automatic_start_action, "automatic_stop_action": cur.automatic_stop_action });
    if cur_opts != options(hv) {
        steps.push(Step::vm(d, "set_options", cur_opts, options(hv), true));
    }
    if !cur
        .dvds
        .iter()
        .any(|x| x.eq_ignore_ascii_case(&d.seed_path))
    {
        // Hyper-V adds a DVD drive to a Generation 2 VM only while it is off.
        let needs_off = hv.generation.0 == 2 && !cur.dvds.iter().any(String::is_empty);
        steps.push(Step::vm(
            d,
            "attach_seed",
            Value::Null,
            json!(d.seed_path),
            needs_off,
        ));
    }
    let restart = cur.is_running() && steps.iter().any(|s| s.requires_off);
    if restart {
        p.steps
            .push(Step::vm(d, "stop", json!(cur.state), json!("Off"), false));
    }
    p.steps.extend(steps);
    if restart || !cur.is_running() {
        p.steps.push(Step::vm(
            d,
            "start",
            json!(if restart { "Off" } else { cur.state.as_str() }),
            json!("Running"),
            false,
        ));
    }
}

fn firmware(hv: &HyperV) -> Value {
    if hv.secure_boot {
        json!({ "secure_boot": true, "template": hv.secure_boot_template.0 })
    } else {
        json!({ "secure_boot": false, "template": "" })
    }
}

fn options(hv: &HyperV) -> Value {
    json!({
        "checkpoint_type": hv.checkpoint_type.to_string(),
        "automatic_start_action": hv.automatic_start_action.to_string(),
        "automatic_stop_action": hv.automatic_stop_action.to_string(),
    })
}

/// The rule names read-state must report.
pub fn watched_rules(hv: &HyperV) -> Vec<String> {
    let mut names = vec![desired::SSH_RULE.to_string(), desired::RDP_RULE.to_string()];
    names.extend(hv.disable_rules.iter().map(|r| r.0.clone()));
    names
}

fn rule_value(r: &DesiredRule) -> Value {
    let mut addrs: Vec<String> = r
        .remote_address
        .iter()
        .map(|a| canonical_address(a))
        .collect();
    addrs.sort();
    json!({ "protocol": "TCP", "port": r.port.to_string(), "remote_address": addrs })
}

fn current_rule_value(r: &FirewallRule) -> Value {
    let mut addrs: Vec<String> = r
        .remote_address
        .iter()
        .map(|a| canonical_address(a))
        .collect();
    addrs.sort();
    let ok = r.enabled && r.direction == "Inbound" && r.action == "Allow";
    json!({ "protocol": if ok { r.protocol.to_ascii_uppercase() } else { format!("{} {} {}", r.direction, r.action, if r.enabled { "enabled" } else { "disabled" }) }, "port": r.local_port.join(","), "remote_address": addrs })
}

fn host_step(object: &str, action: &'static str, from: Value, to: Value) -> Step {
    Step {
        env: None,
        object: object.into(),
        action,
        from,
        to,
        requires_off: false,
    }
}

fn firewall(hv: &HyperV, state: &HostState, p: &mut Plan) {
    let wanted = desired::rules(hv);
    if wanted.is_empty() {
        log::info!("[hyperv] admin_sources is empty: the host firewall is not managed");
        return;
    }
    let find = |name: &str| state.rules.iter().find(|r| r.name == name);
    for r in &wanted {
        let to = rule_value(r);
        match find(r.name) {
            None => p
                .steps
                .push(host_step(r.name, "set_firewall_rule", Value::Null, to)),
            Some(cur) if current_rule_value(cur) != to => p.steps.push(host_step(
                r.name,
                "set_firewall_rule",
                current_rule_value(cur),
                to,
            )),
            Some(_) => {}
        }
    }
    if !hv.rdp && find(desired::RDP_RULE).is_some() {
        p.steps.push(host_step(
            desired::RDP_RULE,
            "remove_firewall_rule",
            json!("present"),
            Value::Null,
        ));
    }
    // Only after hv-provision's own rules exist: disabling first would lock the admin out.
    for name in &hv.disable_rules {
        if find(&name.0).is_some_and(|r| r.enabled) {
            p.steps.push(host_step(
                &name.0,
                "disable_firewall_rule",
                json!("enabled"),
                json!("disabled"),
            ));
        }
    }
}
