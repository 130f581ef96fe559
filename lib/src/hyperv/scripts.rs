//! The fixed PowerShell scripts hv-provision runs on the Hyper-V host.
//!
//! Each is a constant: no value from the inventory or the host is ever put into this text.
//! A script is a script block taking one parameter, `$d`, the data decoded from the JSON
//! blob, and returns one object (a hashtable) that the bootstrap serialises. The first line
//! names the script (the host simulator in the tests recognises scripts by it).
//! Cmdlet output nobody reads goes to `Out-Null` so that it cannot mix into the result.

/// One fixed script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Script {
    pub name: &'static str,
    pub text: &'static str,
}

macro_rules! script {
    ($id:ident, $name:literal, $body:literal) => {
        pub const $id: Script = Script {
            name: $name,
            text: concat!("# pimops-hv: ", $name, "\nparam($d)\n", $body),
        };
    };
}

script!(
    READ_STATE,
    "read-state",
    r#"$vms = @()
foreach ($vm in @(Get-VM | Where-Object { @($d.names) -contains $_.Name })) {
    $disks = @()
    foreach ($drive in @(Get-VMHardDiskDrive -VM $vm)) {
        $vhd = Get-VHD -Path $drive.Path
        $disks += @{
            path = [string]$drive.Path
            controller = [string]$drive.ControllerType
            parent = [string]$vhd.ParentPath
            vhd_type = [string]$vhd.VhdType
            size = [int64]$vhd.Size
        }
    }
    $adapters = @()
    foreach ($a in @(Get-VMNetworkAdapter -VM $vm)) {
        $adapters += @{
            switch = [string]$a.SwitchName
            mac = [string]$a.MacAddress
            dynamic_mac = [bool]$a.DynamicMacAddressEnabled
        }
    }
    $dvds = @(Get-VMDvdDrive -VM $vm | ForEach-Object { [string]$_.Path })
    $secureBoot = ''
    $template = ''
    if ($vm.Generation -eq 2) {
        $fw = Get-VMFirmware -VM $vm
        $secureBoot = [string]$fw.SecureBoot
        $template = [string]$fw.SecureBootTemplate
    }
    $vms += @{
        id = [string]$vm.Id
        name = [string]$vm.Name
        state = [string]$vm.State
        generation = [int]$vm.Generation
        cpus = [int]$vm.ProcessorCount
        memory_startup = [int64]$vm.MemoryStartup
        dynamic_memory = [bool]$vm.DynamicMemoryEnabled
        checkpoint_type = [string]$vm.CheckpointType
        automatic_start_action = [string]$vm.AutomaticStartAction
        automatic_stop_action = [string]$vm.AutomaticStopAction
        notes = [string]$vm.Notes
        disks = $disks
        adapters = $adapters
        dvds = $dvds
        secure_boot = $secureBoot
        secure_boot_template = $template
    }
}
$rules = @()
foreach ($name in @($d.rules)) {
    $r = Get-NetFirewallRule -Name $name -ErrorAction SilentlyContinue
    if ($null -eq $r) { continue }
    $ports = $r | Get-NetFirewallPortFilter
    $addresses = $r | Get-NetFirewallAddressFilter
    $rules += @{
        name = [string]$r.Name
        enabled = ([string]$r.Enabled -eq 'True')
        direction = [string]$r.Direction
        action = [string]$r.Action
        protocol = [string]$ports.Protocol
        local_port = @($ports.LocalPort | ForEach-Object { [string]$_ })
        remote_address = @($addresses.RemoteAddress | ForEach-Object { [string]$_ })
    }
}
@{
    vms = $vms
    rules = $rules
    switches = @(Get-VMSwitch | ForEach-Object { [string]$_.Name })
    base_vhdx = [bool](Test-Path -LiteralPath $d.base_vhdx)
}
"#
);

script!(
    CREATE_VM,
    "create-vm",
    r#"if (@(Get-VM | Where-Object { $_.Name -eq $d.name }).Count -gt 0) {
    throw ('a VM named ' + $d.name + ' already exists')
}
$vm = New-VM -Name $d.name -Generation ([int16]$d.generation) -MemoryStartupBytes ([int64]$d.memory_bytes) -NoVHD -Path $d.vm_dir -SwitchName $d.switch
Set-VM -VM $vm -Notes $d.notes
Set-VMProcessor -VM $vm -Count ([int64]$d.cpus)
Set-VMMemory -VM $vm -DynamicMemoryEnabled $false -StartupBytes ([int64]$d.memory_bytes)
Get-VMNetworkAdapter -VM $vm | Set-VMNetworkAdapter -StaticMacAddress $d.mac
@{ id = [string]$vm.Id }
"#
);

script!(
    ADD_DISK,
    "add-disk",
    r#"$vm = Get-VM -Id $d.id
if (-not (Test-Path -LiteralPath $d.path)) {
    New-Item -ItemType Directory -Force -Path (Split-Path -Parent $d.path) | Out-Null
    New-VHD -Path $d.path -ParentPath $d.parent -Differencing | Out-Null
}
if ((Get-VHD -Path $d.path).Size -lt [int64]$d.size_bytes) {
    Resize-VHD -Path $d.path -SizeBytes ([int64]$d.size_bytes)
}
Add-VMHardDiskDrive -VM $vm -Path $d.path
@{ path = [string]$d.path }
"#
);

script!(
    RESIZE_DISK,
    "resize-disk",
    r#"Resize-VHD -Path $d.path -SizeBytes ([int64]$d.size_bytes)
@{ size = [int64](Get-VHD -Path $d.path).Size }
"#
);

script!(
    SET_PROCESSOR,
    "set-processor",
    r#"Set-VMProcessor -VM (Get-VM -Id $d.id) -Count ([int64]$d.cpus)
@{ cpus = [int64]$d.cpus }
"#
);

script!(
    SET_MEMORY,
    "set-memory",
    r#"Set-VMMemory -VM (Get-VM -Id $d.id) -DynamicMemoryEnabled $false -StartupBytes ([int64]$d.memory_bytes)
@{ memory_bytes = [int64]$d.memory_bytes }
"#
);

script!(
    CONNECT_SWITCH,
    "connect-switch",
    r#"Get-VMNetworkAdapter -VM (Get-VM -Id $d.id) | Connect-VMNetworkAdapter -SwitchName $d.switch
@{ switch = [string]$d.switch }
"#
);

script!(
    SET_MAC,
    "set-mac",
    r#"Get-VMNetworkAdapter -VM (Get-VM -Id $d.id) | Set-VMNetworkAdapter -StaticMacAddress $d.mac
@{ mac = [string]$d.mac }
"#
);

script!(
    SET_FIRMWARE,
    "set-firmware",
    r#"$vm = Get-VM -Id $d.id
if ($d.secure_boot) {
    Set-VMFirmware -VM $vm -EnableSecureBoot On -SecureBootTemplate $d.template
} else {
    Set-VMFirmware -VM $vm -EnableSecureBoot Off
}
@{ secure_boot = [bool]$d.secure_boot }
"#
);

script!(
    SET_OPTIONS,
    "set-options",
    r#"Set-VM -VM (Get-VM -Id $d.id) -CheckpointType $d.checkpoint_type -AutomaticStartAction $d.automatic_start_action -AutomaticStopAction $d.automatic_stop_action
@{ checkpoint_type = [string]$d.checkpoint_type }
"#
);

script!(
    ATTACH_SEED,
    "attach-seed",
    r#"$vm = Get-VM -Id $d.id
New-Item -ItemType Directory -Force -Path (Split-Path -Parent $d.path) | Out-Null
[IO.File]::WriteAllBytes($d.path, [Convert]::FromBase64String($d.iso))
$attached = @(Get-VMDvdDrive -VM $vm | Where-Object { $_.Path -eq $d.path })
if ($attached.Count -eq 0) {
    $empty = @(Get-VMDvdDrive -VM $vm | Where-Object { -not $_.Path })
    if ($empty.Count -gt 0) {
        Set-VMDvdDrive -VMDvdDrive $empty[0] -Path $d.path
    } else {
        Add-VMDvdDrive -VM $vm -Path $d.path
    }
}
@{ path = [string]$d.path; bytes = (Get-Item -LiteralPath $d.path).Length }
"#
);

script!(
    START_VM,
    "start-vm",
    r#"$vm = Get-VM -Id $d.id
if ([string]$vm.State -ne 'Running') { Start-VM -VM $vm }
$deadline = (Get-Date).AddSeconds([int]$d.timeout)
while ([string](Get-VM -Id $d.id).State -ne 'Running') {
    if ((Get-Date) -gt $deadline) { throw ('VM did not reach Running within ' + $d.timeout + 's') }
    Start-Sleep -Seconds 1
}
@{ state = [string](Get-VM -Id $d.id).State }
"#
);

script!(
    STOP_VM,
    "stop-vm",
    r#"$vm = Get-VM -Id $d.id
if ([string]$vm.State -ne 'Off') { Stop-VM -VM $vm -Force }
$deadline = (Get-Date).AddSeconds([int]$d.timeout)
while ([string](Get-VM -Id $d.id).State -ne 'Off') {
    if ((Get-Date) -gt $deadline) { throw ('VM did not shut down within ' + $d.timeout + 's') }
    Start-Sleep -Seconds 1
}
@{ state = [string](Get-VM -Id $d.id).State }
"#
);

script!(
    REMOVE_VM,
    "remove-vm",
    r#"$vm = Get-VM -Id $d.id
if ([string]$vm.State -ne 'Off') { Stop-VM -VM $vm -TurnOff -Force }
Remove-VM -VM $vm -Force
$removed = @()
foreach ($path in @($d.files)) {
    if (Test-Path -LiteralPath $path) {
        Remove-Item -LiteralPath $path -Force
        $removed += [string]$path
    }
}
@{ removed = $removed }
"#
);

script!(
    SET_FIREWALL_RULE,
    "set-firewall-rule",
    r#"$existing = Get-NetFirewallRule -Name $d.name -ErrorAction SilentlyContinue
if ($null -eq $existing) {
    New-NetFirewallRule -Name $d.name -DisplayName $d.display_name -Group $d.group -Direction Inbound -Action Allow -Protocol $d.protocol -LocalPort $d.port -RemoteAddress @($d.remote_address) -Enabled True | Out-Null
} else {
    Set-NetFirewallRule -Name $d.name -Direction Inbound -Action Allow -Protocol $d.protocol -LocalPort $d.port -RemoteAddress @($d.remote_address) -Enabled True
}
@{ name = [string]$d.name }
"#
);

script!(
    DISABLE_FIREWALL_RULE,
    "disable-firewall-rule",
    r#"Disable-NetFirewallRule -Name $d.name
@{ name = [string]$d.name }
"#
);

script!(
    REMOVE_FIREWALL_RULE,
    "remove-firewall-rule",
    r#"Remove-NetFirewallRule -Name $d.name
@{ name = [string]$d.name }
"#
);

/// Every script hv-provision can send.
pub const ALL: &[Script] = &[
    READ_STATE,
    CREATE_VM,
    ADD_DISK,
    RESIZE_DISK,
    SET_PROCESSOR,
    SET_MEMORY,
    CONNECT_SWITCH,
    SET_MAC,
    SET_FIRMWARE,
    SET_OPTIONS,
    ATTACH_SEED,
    START_VM,
    STOP_VM,
    REMOVE_VM,
    SET_FIREWALL_RULE,
    DISABLE_FIREWALL_RULE,
    REMOVE_FIREWALL_RULE,
];
