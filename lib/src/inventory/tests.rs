use super::*;
use crate::error::ErrorKind;

fn example_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/infra.toml")
}

fn example_text() -> String {
    std::fs::read_to_string(example_path()).expect("examples/infra.toml is readable")
}

fn example() -> Inventory {
    Inventory::load(&example_path()).unwrap_or_else(|e| panic!("{e}"))
}

/// The message of the Config error loading `text` gives.
fn error(text: &str) -> String {
    let e = Inventory::from_str(text, "infra.toml").expect_err("expected an error");
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    e.to_string()
}

const BASE: &str =
    "project = \"pim\"\n[env.prod]\ndocker = \"local\"\ndomain = \"pim.example.com\"\n";

#[test]
fn the_example_is_valid_and_keeps_env_order() {
    let inv = example();
    let names: Vec<&str> = inv.envs().iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["prod", "stage", "dev"]);
    assert_eq!(inv.project(), "pim");
    assert_eq!(inv.ovh().unwrap().api_url(), "https://eu.api.ovh.com/1.0");
    assert_eq!(inv.hyperv().unwrap().port, 22);
    let prod = inv.env("prod").unwrap();
    assert_eq!(prod.docker.to_string(), "ssh://deploy@10.10.0.10:22");
    let vm = prod.vm.as_ref().unwrap();
    assert_eq!(vm.memory.bytes(), 48 << 30);
    assert_eq!(vm.mac.hyperv(), "00155D0A0010");
    assert_eq!(vm.ip.to_string(), "10.10.0.10/24");
    assert_eq!(prod.dns[1].fqdn("example.com"), "example.com");
    assert_eq!(prod.waf[1].action, WafAction::ManagedChallenge);
    assert_eq!(
        inv.env("dev").unwrap().database.as_ref().unwrap().endpoint,
        DbEndpoint::Tcp {
            host: "10.10.0.30".into(),
            port: 3306
        }
    );
    assert_eq!(inv.checks().len(), 9);
    assert!(inv.dir().ends_with("examples"), "{}", inv.dir().display());
}

#[test]
fn a_minimal_file_loads_without_optional_sections() {
    let inv = Inventory::from_str(BASE, "infra.toml").unwrap();
    assert_eq!(
        inv.ovh().unwrap_err().to_string(),
        "infra.toml: no [ovh] section"
    );
    assert_eq!(inv.hyperv().unwrap_err().kind(), ErrorKind::Config);
    assert_eq!(inv.cloudflare().api, "https://api.cloudflare.com/client/v4");
    let prod = inv.env("prod").unwrap();
    assert!(prod.backup().is_none());
    assert!(inv.checks_for(prod).is_empty());
}

#[test]
fn backup_defaults_are_inherited_and_overridden_key_by_key() {
    let inv = example();
    let prod = inv.env("prod").unwrap().backup().unwrap();
    assert_eq!(
        prod.repository,
        "s3:https://storage.googleapis.com/pim-backups/prod"
    );
    assert_eq!(
        prod.password,
        BackupPassword::File("/etc/pimops/restic-password".into())
    );
    assert_eq!(
        prod.keep,
        Some(Keep {
            last: Some(7),
            hourly: None,
            daily: Some(30),
            weekly: Some(8),
            monthly: Some(24)
        })
    );
    assert_eq!(
        prod.ping.as_deref(),
        Some("https://hc-ping.com/0b3f5d6e-1111-4222-8333-944455556666/prod")
    );
    assert_eq!(
        prod.metrics_dir.as_deref(),
        Some(Path::new("/var/lib/node_exporter/textfile"))
    );
    assert_eq!(prod.host, "pim-prod");

    let stage = inv.env("stage").unwrap().backup().unwrap();
    assert_eq!(
        stage.password,
        BackupPassword::Secret("RESTIC_PASSWORD_STAGE".into())
    );
    assert_eq!(stage.ping, None, "an empty ping switches the default off");
    assert_eq!(stage.keep.unwrap().restic_args().len(), 10);

    let dev = inv.env("dev").unwrap().backup().unwrap();
    assert_eq!(dev.keep.unwrap().restic_args(), ["--keep-last", "3"]);
    assert_eq!(dev.metrics_dir, None);
    assert_eq!(dev.host, "pim-dev");
    assert_eq!(dev.volume_sample_pct, 10.0);
    assert_eq!(prod.volume_sample_pct, 100.0);
    assert_eq!(prod.checksum_tables, ["pimcore.objects", "pimcore.assets"]);
}

#[test]
fn restore_verify_settings_are_checked() {
    let text =
        format!("{BASE}backup = {{ repository = \"/r\", checksum_tables = [\"objects\"] }}\n");
    assert_eq!(
        error(&text),
        "infra.toml:5:50: env.prod.backup.checksum_tables[0]: \"objects\": expected \"schema.table\""
    );
    let text = format!("{BASE}[backup]\nrepository = \"/r\"\nvolume_sample_pct = 0\n");
    assert_eq!(
        error(&text),
        "infra.toml:7:21: backup.volume_sample_pct: expected a percentage above 0 and at most 100"
    );
    let inv = Inventory::from_str(
        &format!("{BASE}[backup]\nrepository = \"/r\"\n"),
        "infra.toml",
    )
    .unwrap();
    let b = inv.env("prod").unwrap().backup().unwrap();
    assert!(b.checksum_tables.is_empty());
    assert_eq!(b.volume_sample_pct, 100.0);
}

#[test]
fn incremental_backups_are_opt_in_per_env() {
    let text = format!(
        "{BASE}backup = {{ incremental = {{ full_every = \"24h\" }} }}\n[backup]\nrepository = \"/r\"\n"
    );
    let inv = Inventory::from_str(&text, "infra.toml").unwrap();
    let b = inv.env("prod").unwrap().backup().unwrap();
    let full_every = b.incremental.map(|i| i.full_every.std());
    assert_eq!(full_every, Some(std::time::Duration::from_secs(24 * 3600)));
    let inv = Inventory::from_str(
        &format!("{BASE}[backup]\nrepository = \"/r\"\n"),
        "infra.toml",
    )
    .unwrap();
    assert_eq!(inv.env("prod").unwrap().backup().unwrap().incremental, None);
    let text =
        format!("{BASE}[backup]\nrepository = \"/r\"\nincremental = {{ full_every = \"0s\" }}\n");
    assert!(
        error(&text).contains("backup.incremental.full_every: must be longer than 0s"),
        "{}",
        error(&text)
    );
    let text = format!("{BASE}[backup]\nrepository = \"/r\"\nincremental = {{ every = \"1d\" }}\n");
    assert!(error(&text).contains("every"), "{}", error(&text));
}

#[test]
fn backup_password_defaults_to_the_restic_password_secret() {
    let text = format!("{BASE}[backup]\nrepository = \"/srv/restic/{{project}}/{{env}}\"\n");
    let inv = Inventory::from_str(&text, "infra.toml").unwrap();
    let b = inv.env("prod").unwrap().backup().unwrap();
    assert_eq!(b.password, BackupPassword::Secret("RESTIC_PASSWORD".into()));
    assert_eq!(b.repository, "/srv/restic/pim/prod");
    assert_eq!(b.keep, None);
}

#[test]
fn checks_are_filtered_and_expanded_per_env() {
    let inv = example();
    let prod = inv.env("prod").unwrap();
    let checks = inv.checks_for(prod);
    let names: Vec<&str> = checks.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "front page",
            "origin health",
            "ssh banner",
            "redis",
            "database",
            "stack replicas",
            "backup age",
            "docker disk",
            "ntp"
        ]
    );
    assert_eq!(checks[0].url.as_deref(), Some("https://pim.example.com/"));
    assert_eq!(checks[1].headers["X-Probe"], "pim-prod");
    assert_eq!(checks[5].stack.as_deref(), Some("pim-prod"));

    let dev = inv.env("dev").unwrap();
    let checks = inv.checks_for(dev);
    let names: Vec<&str> = checks.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        ["front page", "stack replicas", "docker disk", "ntp"]
    );
    assert_eq!(
        checks[0].url.as_deref(),
        Some("https://dev.pim.example.com/")
    );
    // The raw specs keep their templates.
    assert_eq!(inv.checks()[0].url.as_deref(), Some("https://{domain}/"));
}

#[test]
fn expand_replaces_known_placeholders_once() {
    let text = "project = \"pim\"\n[env.prod]\ndocker = \"local\"\ndomain = \"x.example.com\"\n[env.bare]\ndocker = \"local\"\n";
    let inv = Inventory::from_str(text, "infra.toml").unwrap();
    let prod = inv.env("prod").unwrap();
    assert_eq!(
        inv.expand("{project}-{env}.{domain} {zone} {other} {", prod),
        "pim-prod.x.example.com {zone} {other} {"
    );
    let bare = inv.env("bare").unwrap();
    assert_eq!(
        inv.expand("https://{domain}/{env}", bare),
        "https://{domain}/bare"
    );
}

#[test]
fn branches_pick_the_first_matching_env_in_file_order() {
    let inv = example();
    let env_of = |b: &str| inv.env_for_branch(b).map(|e| e.name.as_str());
    assert_eq!(env_of("main"), Some("prod"));
    assert_eq!(env_of("release/2.1"), Some("stage"));
    assert_eq!(env_of("stage"), Some("stage"));
    assert_eq!(env_of("develop"), Some("dev"));
    assert_eq!(env_of("feature/login"), Some("dev"));
    assert_eq!(env_of("feature/login/fix"), None);
    assert_eq!(env_of("mainline"), None);

    let text = "project = \"p\"\n[env.a]\ndocker = \"local\"\nbranches = [\"x/**\"]\n[env.b]\ndocker = \"local\"\nbranches = [\"x/y\"]\n";
    let inv = Inventory::from_str(text, "infra.toml").unwrap();
    assert_eq!(
        inv.env_for_branch("x/y").map(|e| e.name.as_str()),
        Some("a")
    );
}

#[test]
fn unknown_env_lists_the_known_ones() {
    let e = example().env("qa").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    let expected = format!(
        "{}: no env \"qa\" (envs: prod, stage, dev)",
        example_path().display()
    );
    assert_eq!(e.to_string(), expected);
}

#[test]
fn a_missing_file_is_a_config_error() {
    let e = Inventory::load(Path::new("infra.toml.does-not-exist")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert_eq!(
        e.to_string(),
        "infra.toml.does-not-exist: cannot read: No such file or directory"
    );
}

#[test]
fn load_labels_errors_with_the_path_and_resolves_relative_paths() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("infra.toml");
    std::fs::write(&path, format!("{BASE}stack = \"stack/pim.yml\"\n")).unwrap();
    let inv = Inventory::load(&path).unwrap();
    let stack = inv.env("prod").unwrap().stack.clone().unwrap();
    assert_eq!(inv.resolve_path(&stack), dir.path().join("stack/pim.yml"));
    assert_eq!(inv.resolve_path(Path::new("/abs")), Path::new("/abs"));
    assert_eq!(inv.file(), path.display().to_string());

    std::fs::write(&path, "project = \"pim\"\nproject = \"again\"\n").unwrap();
    let e = Inventory::load(&path).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(
        e.to_string()
            .starts_with(&format!("{}:2:1: ", path.display())),
        "{e}"
    );
}

#[test]
fn syntax_errors_have_a_position() {
    assert_eq!(
        error("project = \"pim\"\n[env.prod\n"),
        "infra.toml:2:10: invalid table header\nexpected `.`, `]`"
    );
}

#[test]
fn type_errors_name_the_key_path_and_position() {
    let text = format!("{BASE}vm = {{ cpus = 8, memory = \"48 parsecs\", disk = \"1TiB\", mac = \"00:15:5D:0A:00:10\", ip = \"10.0.0.2/24\", gateway = \"10.0.0.1\" }}\n");
    assert_eq!(
        error(&text),
        "infra.toml:5:27: env.prod.vm.memory: expected a size like \"48GiB\" (units B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)"
    );
    let text = "project = \"pim\"\n[env.prod]\ndocker = \"ftp://x\"\n";
    assert_eq!(
        error(text),
        "infra.toml:3:10: env.prod.docker: expected \"local\" or \"ssh://user@host[:port]\""
    );
    let text = "project = 7\n";
    assert_eq!(
        error(text),
        "infra.toml:1:11: project: invalid type: integer `7`, expected a string"
    );
}

#[test]
fn unknown_keys_are_errors_at_the_key() {
    let text = format!("{BASE}[env.prod.vm]\ncpus = 8\nmemroy = \"48GiB\"\n");
    assert_eq!(
        error(&text),
        "infra.toml:7:1: env.prod.vm.memroy: unknown field `memroy`, expected one of `name`, `cpus`, `memory`, `disk`, `mac`, `ip`, `gateway`, `nameservers`, `swarm_join`"
    );
    assert_eq!(
        error("project = \"p\"\nprojekt = \"p\"\n"),
        "infra.toml:2:1: projekt: unknown field `projekt`, expected one of `project`, `ovh`, `hyperv`, `cloudflare`, `ssh`, `backup`, `env`, `check`"
    );
}

#[test]
fn missing_keys_are_reported_at_their_table() {
    assert_eq!(
        error("[env.prod]\ndocker = \"local\"\n"),
        "infra.toml:1:1: missing field `project`"
    );
    assert_eq!(
        error("project = \"pim\"\n\n[env.prod]\ndomain = \"x.y\"\n"),
        "infra.toml:3:1: env.prod: missing field `docker`"
    );
}

#[test]
fn values_checked_while_parsing_point_at_the_value() {
    let text = format!("{BASE}branches = [\"main\", \"release/[\"]\n");
    assert_eq!(error(&text), "infra.toml:5:21: env.prod.branches[1]: invalid glob \"release/[\": unclosed character class; missing ']'");
    let text =
        format!("{BASE}database = {{ socket = \"/run/x.sock\", host = \"db\", user = \"u\" }}\n");
    assert_eq!(
        error(&text),
        "infra.toml:5:12: env.prod.database: set only one of socket, host or service"
    );
}

#[test]
fn semantic_errors_are_located_with_their_key_path() {
    let text = format!("{BASE}vm = {{ cpus = 8, memory = \"48GiB\", disk = \"1TiB\", mac = \"00:15:5D:0A:00:10\", ip = \"10.0.0.2/24\", gateway = \"10.1.0.1\" }}\n");
    assert_eq!(
        error(&text),
        "infra.toml:5:108: env.prod.vm.gateway: 10.1.0.1 is not another address in 10.0.0.2/24"
    );

    let text = format!("{BASE}zone = \"example.org\"\n");
    assert_eq!(
        error(&text),
        "infra.toml:4:10: env.prod.domain: \"pim.example.com\" is not in zone \"example.org\""
    );

    let text = "project = \"pim\"\n[env.Prod]\ndocker = \"local\"\n";
    assert!(
        error(text).starts_with("infra.toml:2:1: env.Prod: \"Prod\" is not a valid name"),
        "{}",
        error(text)
    );

    let text = format!("{BASE}zone = \"example.com\"\n[[env.prod.dns]]\nname = \"txt\"\ntype = \"TXT\"\ncontent = \"v=spf1 -all\"\nproxied = true\n");
    assert_eq!(
        error(&text),
        "infra.toml:10:11: env.prod.dns[0].proxied: a TXT record cannot be proxied"
    );

    let text = format!(
        "{BASE}[[env.prod.waf]]\ndescription = \"x\"\nexpression = \"true\"\naction = \"block\"\n"
    );
    assert_eq!(
        error(&text),
        "infra.toml:2:1: env.prod.zone: missing: dns and waf entries need the env's zone"
    );

    let text = format!(
        "{BASE}[backup]\nrepository = \"/r\"\npassword_secret = \"A\"\npassword_file = \"/f\"\n"
    );
    assert_eq!(
        error(&text),
        "infra.toml:8:17: backup.password_file: set password_secret or password_file, not both"
    );

    let text = format!("{BASE}backup = {{ keep = {{}} }}\n");
    assert_eq!(error(&text), "infra.toml:5:10: env.prod.backup.repository: missing: set a repository here or in [backup]");

    let text =
        format!("{BASE}backup = {{ repository = \"/r\", password_secret = \"restic pw\" }}\n");
    assert_eq!(
        error(&text),
        "infra.toml:5:49: env.prod.backup.password_secret: \"restic pw\" is not a secret name (an environment variable name like RESTIC_PASSWORD)"
    );
}

#[test]
fn check_errors_name_the_check_index_and_field() {
    // Field present: located at its value.
    let text = format!("{BASE}[[check]]\nname = \"a\"\nurl = \"https://{{domain}}/\"\n[[check]]\nname = \"b\"\nkind = \"tcp\"\naddress = \"h:1\"\nurl = \"https://x/\"\n");
    assert_eq!(
        error(&text),
        "infra.toml:12:7: check[1].url: not a field of a tcp check"
    );
    // Field missing: located at the check's table.
    let text = format!("{BASE}[[check]]\nname = \"d\"\nkind = \"disk\"\n");
    assert_eq!(
        error(&text),
        "infra.toml:5:1: check[0].path: required for a disk check"
    );
    // Duplicate names.
    let text = format!("{BASE}[[check]]\nname = \"a\"\nurl = \"https://x/\"\n[[check]]\nname = \"a\"\nurl = \"https://y/\"\n");
    assert_eq!(
        error(&text),
        "infra.toml:9:8: check[1].name: duplicate check name \"a\" (first at check[0])"
    );
    // Unknown env.
    let text =
        format!("{BASE}[[check]]\nname = \"a\"\nurl = \"https://x/\"\nenvs = [\"prod\", \"qa\"]\n");
    assert_eq!(
        error(&text),
        "infra.toml:8:17: check[0].envs[1]: no env \"qa\" (envs: prod)"
    );
    // A template the env cannot fill.
    let text = "project = \"pim\"\n[env.dev]\ndocker = \"local\"\n[[check]]\nname = \"a\"\nurl = \"https://{domain}/\"\n";
    assert_eq!(
        error(text),
        "infra.toml:6:7: check[0].url: uses {domain} but env.dev has no domain"
    );
    // Valid before expansion, invalid after.
    let text =
        format!("{BASE}[[check]]\nname = \"a\"\nurl = \"https://x/\"\nresolve = \"{{domain}}\"\n");
    assert_eq!(
        error(&text),
        "infra.toml:8:11: check[0].resolve: in env prod: expected an IP address"
    );
    // Unknown keys in a check are caught by the parser, at the key.
    let text = format!("{BASE}[[check]]\nname = \"a\"\nurll = \"https://x/\"\n");
    assert!(
        error(&text).starts_with("infra.toml:7:1: check[0].urll: unknown field `urll`"),
        "{}",
        error(&text)
    );
}

/// The char boundary at or before `at` (clamped), so mutations stay valid UTF-8.
fn boundary(text: &str, at: usize) -> usize {
    let mut i = at.min(text.len());
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn assert_config_or_ok(
    text: &str,
) -> std::result::Result<(), proptest::test_runner::TestCaseError> {
    if let Err(e) = Inventory::from_str(text, "FILE") {
        proptest::prop_assert_eq!(e.kind(), ErrorKind::Config);
        proptest::prop_assert!(e.to_string().starts_with("FILE:"), "{}", e);
    }
    Ok(())
}

proptest::proptest! {
    // Case count from PROPTEST_CASES (proptest's default config), so `make fuzz` scales it.
    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
        assert_config_or_ok(&text)?;
    }

    #[test]
    fn mutations_of_the_example_never_panic(
        at in 0usize..100_000,
        len in 0usize..40,
        insert in "[\\PC\n\\[\\]{}=\"'.,#]{0,8}",
        swap in proptest::option::of((0usize..400, 0usize..400)),
    ) {
        let mut text = example_text();
        let start = boundary(&text, at % (text.len() + 1));
        let end = boundary(&text, start + len).max(start);
        text.replace_range(start..end, &insert);
        if let Some((a, b)) = swap {
            let mut lines: Vec<&str> = text.lines().collect();
            if !lines.is_empty() {
                let (a, b) = (a % lines.len(), b % lines.len());
                lines.swap(a, b);
            }
            text = lines.join("\n");
        }
        assert_config_or_ok(&text)?;
    }
}

#[test]
fn ssh_settings_merge_env_over_defaults() {
    let inv = Inventory::from_str(
        r#"
project = "pim"
[ssh]
identity = "/keys/deploy"
connect_timeout = "3s"
[env.prod]
docker = "ssh://deploy@10.0.0.1"
ssh = { known_hosts = "/kh/prod" }
[env.dev]
docker = "local"
"#,
        "infra.toml",
    )
    .unwrap();
    let prod = inv.ssh_options(inv.env("prod").unwrap());
    assert_eq!(
        prod.identity.as_deref(),
        Some(std::path::Path::new("/keys/deploy"))
    );
    assert_eq!(prod.known_hosts, std::path::PathBuf::from("/kh/prod"));
    assert_eq!(prod.connect_timeout, std::time::Duration::from_secs(3));
    let dev = inv.ssh_options(inv.env("dev").unwrap());
    assert_eq!(
        dev.known_hosts,
        std::path::PathBuf::from("~/.ssh/known_hosts")
    );
}

#[test]
fn ssh_settings_reject_unknown_keys() {
    let e = Inventory::from_str("project = \"pim\"\n[ssh]\nidentiy = \"x\"\n", "infra.toml")
        .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("infra.toml:3:1: ssh.identiy: unknown field"),
        "{e}"
    );
}

#[test]
fn a_relative_password_file_is_next_to_the_inventory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("infra.toml");
    std::fs::write(
        &path,
        "project = \"pim\"\n[backup]\nrepository = \"/srv/r/{env}\"\npassword_file = \"secrets/restic\"\n[env.prod]\ndocker = \"local\"\n",
    )
    .unwrap();
    let inv = Inventory::load(&path).unwrap();
    let b = inv.env("prod").unwrap().backup().unwrap();
    assert_eq!(
        b.password,
        BackupPassword::File(dir.path().join("secrets/restic"))
    );
}
