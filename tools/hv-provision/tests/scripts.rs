//! Every PowerShell text hv-provision can send is parsed with the tree-sitter-powershell
//! grammar, and hostile values never reach it: the command line and the scripts are
//! constants, and values travel only as base64 data.

use base64::Engine as _;
use pimops::hyperv::{scripts, wire};
use proptest::prelude::*;
use serde_json::{json, Value};

fn parse_errors(src: &str) -> Vec<String> {
    let mut parser = tree_sitter::Parser::new();
    parser
        .set_language(&tree_sitter_powershell::LANGUAGE.into())
        .expect("loading the PowerShell grammar");
    let tree = parser.parse(src, None).expect("parsing");
    let mut errors = Vec::new();
    let mut cursor = tree.walk();
    let mut stack = vec![tree.root_node()];
    while let Some(node) = stack.pop() {
        if node.is_error() || node.is_missing() {
            errors.push(format!(
                "{} at {:?}: {:?}",
                node.kind(),
                node.start_position(),
                &src[node.byte_range()]
            ));
        }
        stack.extend(node.children(&mut cursor));
    }
    errors
}

#[test]
fn the_bootstrap_and_every_script_parse_without_error_nodes() {
    assert_eq!(parse_errors(wire::BOOTSTRAP), Vec::<String>::new());
    assert!(scripts::ALL.len() >= 17);
    for s in scripts::ALL {
        assert_eq!(
            parse_errors(s.text),
            Vec::<String>::new(),
            "script {}",
            s.name
        );
        assert!(s
            .text
            .starts_with(&format!("# pimops-hv: {}\nparam($d)\n", s.name)));
    }
}

#[test]
fn the_grammar_does_find_errors() {
    // The check above would be worthless if the grammar accepted anything.
    assert!(!parse_errors("$x = 'unterminated").is_empty());
    assert!(!parse_errors("Get-VM -Name 'a'b'; }").is_empty());
}

/// Hostile strings: quotes (also PowerShell's curly ones), subexpressions, backticks,
/// separators, newlines, NULs, very long values.
fn hostile() -> impl Strategy<Value = String> {
    let pieces = prop::sample::select(vec![
        "'",
        "\"",
        "\u{2018}",
        "\u{2019}",
        "\u{201A}",
        "\u{201B}",
        "\u{201C}",
        "\u{201D}",
        "$(Remove-VM *)",
        "${env:x}",
        "`",
        "`n",
        ";",
        "|",
        "&",
        "\n",
        "\r\n",
        "#",
        "<#",
        "#>",
        "@'",
        "'@",
        "}",
        "{",
        "\0",
        "x",
        " ",
        "é",
    ]);
    prop_oneof![
        prop::collection::vec(pieces, 0..40).prop_map(|v| v.concat()),
        "\\PC{0,64}",
        (1usize..4).prop_map(|n| "'$(x)`;\n".repeat(n * 1000)),
    ]
}

fn check_request(script: &scripts::Script, data: &Value) -> Result<(), TestCaseError> {
    let constant = wire::request(script, &json!({}));
    let cmd = wire::request(script, data);
    prop_assert_eq!(&cmd.program, "powershell");
    prop_assert_eq!(
        &cmd.args,
        &constant.args,
        "the command line never depends on data"
    );
    let line =
        pimops::ssh::remote_command_line(&cmd).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert!(line.len() < 8000);
    prop_assert!(!line.contains(['\'', '"', '`', '$', ';', '\n']));
    let stdin = String::from_utf8(cmd.stdin.clone().unwrap_or_default())
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let lines: Vec<&str> = stdin.lines().collect();
    prop_assert_eq!(lines.len(), 2);
    for l in &lines {
        prop_assert!(
            l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b)),
            "only base64 on stdin"
        );
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let text = String::from_utf8(b64.decode(lines[0]).unwrap_or_default()).unwrap_or_default();
    // The fixed text, which the test above parses without error nodes.
    prop_assert_eq!(text.as_str(), script.text, "the script is the fixed one");
    let back: Value = serde_json::from_slice(&b64.decode(lines[1]).unwrap_or_default())
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&back, data, "the data arrives exactly");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn no_value_reaches_code_in_any_script(a in hostile(), b in hostile(), c in hostile()) {
        for script in scripts::ALL {
            let data = json!({
                "id": a, "name": b, "names": [a, b], "vm_dir": c, "notes": a, "switch": b,
                "mac": c, "path": a, "parent": b, "template": c, "rules": [b],
                "base_vhdx": c, "display_name": a, "group": b, "remote_address": [c, a],
                "files": [a, c], "iso": b, "checkpoint_type": a, "cpus": 4, "memory_bytes": 1u64 << 33,
            });
            check_request(script, &data)?;
        }
    }

    #[test]
    fn the_vm_name_check_accepts_only_the_hyper_v_alphabet(s in hostile()) {
        let ok = pimops::hyperv::valid_vm_name(&s);
        let expected = (1..=64).contains(&s.len()) && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        prop_assert_eq!(ok, expected);
    }
}
