//! The fixture of cf-sync's tests: a Cloudflare API emulator with one zone, an inventory
//! pointing at it, and the built binary with the token in its environment.

#![allow(dead_code)] // each test binary uses its own part of the fixture

use std::path::PathBuf;

use pimops_test_support::cloudflare_emulator::CloudflareEmulator;
use pimops_test_support::command::{Outcome, TempDir, TestCommand};
use serde_json::Value;

pub const TOKEN: &str = "cf-test-token-Zk93hQ";

pub const ENV_PROD: &str = r#"
[env.prod]
docker = "local"
domain = "pim.example.com"
zone = "example.com"

[[env.prod.dns]]
name = "pim"
type = "A"
content = "203.0.113.10"
proxied = true
ttl = 300

[[env.prod.dns]]
name = "@"
type = "MX"
content = "mx.example.com"
priority = 10
ttl = 3600

[[env.prod.dns]]
name = "_dmarc"
type = "TXT"
content = "v=DMARC1; p=none"

[[env.prod.waf]]
description = "block dotfiles"
expression = 'http.request.uri.path contains "/."'
action = "block"
"#;

pub struct Fixture {
    pub cf: CloudflareEmulator,
    pub zone: String,
    pub dir: TempDir,
    pub config: PathBuf,
}

impl Fixture {
    /// A zone `example.com` and an inventory: `[cloudflare]` (with `cloudflare_extra`
    /// lines) followed by `envs`.
    pub fn new(cloudflare_extra: &str, envs: &str) -> Fixture {
        let cf = CloudflareEmulator::start(TOKEN);
        let zone = cf.add_zone("example.com");
        let dir = TempDir::new();
        let fixture = Fixture {
            config: dir.join("infra.toml"),
            cf,
            zone,
            dir,
        };
        fixture.write_config(cloudflare_extra, envs);
        fixture
    }

    pub fn write_config(&self, cloudflare_extra: &str, envs: &str) {
        let text = format!(
            "project = \"pim\"\n[cloudflare]\napi = \"{}\"\n{cloudflare_extra}\n{envs}",
            self.cf.api_url()
        );
        std::fs::write(&self.config, text).expect("writing infra.toml");
    }

    /// `cf-sync --config … ARGS` with the token set.
    pub fn cmd(&self, args: &[&str]) -> TestCommand {
        TestCommand::new(env!("CARGO_BIN_EXE_cf-sync"))
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .env("CLOUDFLARE_API_TOKEN", TOKEN)
    }

    /// Run and check that the token appears nowhere in the output.
    pub fn run(&self, args: &[&str], code: i32) -> Outcome {
        let out = self.cmd(args).run();
        out.assert_code(code);
        assert_no_secret(&out);
        out
    }

    pub fn records(&self) -> Vec<Value> {
        self.cf.records(&self.zone)
    }

    pub fn record(&self, name: &str, kind: &str) -> Option<Value> {
        self.records()
            .into_iter()
            .find(|r| r["name"] == name && r["type"] == kind)
    }
}

pub fn assert_no_secret(out: &Outcome) {
    assert!(
        !out.stdout.contains(TOKEN) && !out.stderr.contains(TOKEN),
        "the token leaked\n{out}"
    );
}

/// The summary record of `env`.
pub fn summary(out: &Outcome, env: &str) -> Value {
    out.records_of("summary")
        .into_iter()
        .find(|s| s["env"] == env)
        .unwrap_or_else(|| panic!("no summary for {env}\n{out}"))
}

/// `(kind, action, name)` of every change record.
pub fn changes(out: &Outcome) -> Vec<(String, String, String)> {
    let mut v: Vec<(String, String, String)> = out
        .records_of("change")
        .iter()
        .map(|c| {
            let s = |k: &str| c[k].as_str().unwrap_or_default().to_string();
            (s("kind"), s("action"), s("name"))
        })
        .collect();
    v.sort();
    v
}
