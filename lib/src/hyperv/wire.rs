//! How a script travels to the host and its result comes back.
//!
//! The command line is always the same: `powershell ... -EncodedCommand <BOOTSTRAP>`, the
//! base64 of the UTF-16LE bootstrap below. Its alphabet needs no quoting in cmd or in a
//! POSIX shell, and its length does not depend on any value, so cmd's 8,191-character
//! limit is never reached. The bootstrap reads two lines from stdin: the base64 of the
//! fixed script (UTF-8) and the base64 of the JSON data. It runs the script as a script
//! block with the decoded data as its one argument: values are data, never code.
//!
//! The reply is one JSON document between markers, `{"result": ...}` or
//! `{"error": {"message", "command", "category"}}`, so banners and warnings around it do
//! not matter.

use base64::Engine as _;
use serde_json::Value;

use super::scripts::Script;
use crate::error::{Error, Result};
use crate::exec::Command;

pub const BEGIN: &str = "===Begin-Output===";
pub const END: &str = "===End-Output===";

/// The bootstrap: fixed like the scripts.
pub const BOOTSTRAP: &str = r#"$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
[Console]::OutputEncoding = New-Object System.Text.UTF8Encoding $false
$reply = @{}
try {
    $lines = @($input | ForEach-Object { [string]$_ } | Where-Object { $_.Trim() -ne '' })
    if ($lines.Count -ne 2) { throw 'pimops: expected two lines on stdin: the script and its data' }
    $utf8 = New-Object System.Text.UTF8Encoding $false
    $script = $utf8.GetString([Convert]::FromBase64String($lines[0].Trim()))
    $data = $utf8.GetString([Convert]::FromBase64String($lines[1].Trim())) | ConvertFrom-Json
    $reply['result'] = & ([scriptblock]::Create($script)) $data
} catch {
    $reply['error'] = @{
        message = [string]$_.Exception.Message
        command = [string]$_.InvocationInfo.MyCommand
        category = [string]$_.CategoryInfo.Category
    }
}
'===Begin-Output==='
ConvertTo-Json -InputObject $reply -Depth 8 -Compress
'===End-Output==='
"#;

/// The arguments before the encoded bootstrap.
pub const POWERSHELL_FLAGS: &[&str] = &[
    "-NoLogo",
    "-NoProfile",
    "-NonInteractive",
    "-ExecutionPolicy",
    "Bypass",
    "-EncodedCommand",
];

/// `-EncodedCommand`'s encoding: base64 of UTF-16LE.
pub fn encode_command(script: &str) -> String {
    let utf16: Vec<u8> = script.encode_utf16().flat_map(u16::to_le_bytes).collect();
    base64::engine::general_purpose::STANDARD.encode(utf16)
}

/// The command that runs `script` with `data` on the host.
pub fn request(script: &Script, data: &Value) -> Command {
    let b64 = base64::engine::general_purpose::STANDARD;
    let stdin = format!(
        "{}\n{}\n",
        b64.encode(script.text),
        b64.encode(data.to_string())
    );
    Command::new("powershell")
        .args(POWERSHELL_FLAGS.iter().copied())
        .arg(encode_command(BOOTSTRAP))
        .stdin(stdin)
}

/// The result of a script from the host's stdout; a PowerShell error becomes a failure
/// carrying the cmdlet's message.
pub fn parse_reply(script: &Script, stdout: &str, stderr: &str) -> Result<Value> {
    let what = format!("host script {}", script.name);
    let body = stdout
        .split_once(BEGIN)
        .and_then(|(_, rest)| rest.split_once(END))
        .map(|(body, _)| body.trim())
        .ok_or_else(|| {
            let detail = first_line(stderr).or_else(|| first_line(stdout));
            Error::failed(format!(
                "{what}: no result between {BEGIN} and {END} in its output{}",
                detail.map(|d| format!(" ({d})")).unwrap_or_default()
            ))
        })?;
    let mut reply: Value = serde_json::from_str(body)
        .map_err(|e| Error::data(format!("{what}: the result is not JSON: {e}")))?;
    if let Some(err) = reply.get("error").filter(|e| !e.is_null()) {
        let field = |k: &str| err.get(k).and_then(Value::as_str).unwrap_or_default();
        let command = field("command");
        let message = field("message");
        return Err(Error::failed(if command.is_empty() {
            format!("{what}: {message}")
        } else {
            format!("{what}: {command}: {message}")
        }));
    }
    Ok(reply
        .get_mut("result")
        .map(Value::take)
        .unwrap_or(Value::Null))
}

fn first_line(s: &str) -> Option<String> {
    s.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(|l| l.chars().take(300).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hyperv::scripts;

    #[test]
    fn encoded_command_is_utf16le_base64() {
        // "dir" → 64 00 69 00 72 00
        assert_eq!(encode_command("dir"), "ZABpAHIA");
    }

    #[test]
    fn the_command_line_is_constant_short_and_needs_no_quoting() {
        let a = request(&scripts::READ_STATE, &serde_json::json!({"names": ["a'b"]}));
        let b = request(&scripts::STOP_VM, &serde_json::json!({"id": "x;$(y)"}));
        assert_eq!(a.args, b.args);
        let line = crate::ssh::remote_command_line(&a).unwrap();
        assert!(line.len() < 8000, "{}", line.len());
        assert!(
            !line.contains(['\'', '"', '`', '$', ';', '&', '|']),
            "{line}"
        );
    }

    #[test]
    fn replies_are_read_between_markers_and_errors_name_the_cmdlet() {
        let s = &scripts::SET_PROCESSOR;
        let out = format!("banner\n{BEGIN}\n{{\"result\":{{\"cpus\":4}}}}\n{END}\nbye");
        assert_eq!(parse_reply(s, &out, "").unwrap()["cpus"], 4);
        let out = format!(
            "{BEGIN}{{\"error\":{{\"message\":\"The operation cannot be performed while the virtual machine is in its current state.\",\"command\":\"Set-VMProcessor\",\"category\":\"InvalidOperation\"}}}}{END}"
        );
        let e = parse_reply(s, &out, "").unwrap_err();
        assert_eq!(
            e.to_string(),
            "host script set-processor: Set-VMProcessor: The operation cannot be performed while the virtual machine is in its current state."
        );
        let e = parse_reply(s, "", "'powershell' is not recognized").unwrap_err();
        assert!(e.to_string().contains("not recognized"), "{e}");
    }
}
