//! `--format nagios`, `--format prometheus` and `--textfile`.

mod common;

use common::{closed_url, hc};
use pimops_test_support::command::TempDir;
use pimops_test_support::http_stub::{HttpStub, Reply};
use regex::Regex;

fn stub() -> HttpStub {
    let s = HttpStub::start();
    s.route("GET", "/*", Reply::ok().body("ok"));
    s
}

#[test]
fn nagios_status_line_perfdata_and_long_output() {
    let s = stub();
    let ok = s.url_for("/ok");
    let bad = closed_url();
    let out = hc()
        .args([
            "url",
            &ok,
            &bad,
            "--warn-ms",
            "500",
            "--max-ms",
            "2000",
            "--format",
            "nagios",
        ])
        .assert_code(2);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    let (text, perf) = lines[0].split_once(" | ").expect("perfdata after ' | '");
    assert!(
        text.starts_with(&format!(
            "HEALTHCHECK CRITICAL: 1 ok, 0 warning, 1 critical, 0 unknown; {bad}: "
        )),
        "{out}"
    );
    let item =
        Regex::new(r"^'((?:[^']|'')+)'=(\d+(?:\.\d+)?)(s|);([\d.:]*);([\d.:]*);(\d*);(\d*)$")
            .unwrap();
    let mut labels = Vec::new();
    // Labels contain spaces: split on the `'label'=value;…` items, not on blanks.
    for part in Regex::new(r"'[^=]+'=\S+").unwrap().find_iter(perf) {
        let c = item
            .captures(part.as_str())
            .unwrap_or_else(|| panic!("bad perfdata {:?}\n{out}", part.as_str()));
        labels.push(c[1].to_string());
        assert_eq!(&c[3], "s");
        assert_eq!((&c[4], &c[5], &c[6]), ("0.500", "2.000", "0"), "{out}");
    }
    assert_eq!(labels, [format!("{ok} time"), format!("{bad} time")]);
    assert_eq!(
        lines[1],
        format!(
            "CRITICAL {bad}: {} ({bad})",
            text.rsplit_once(": ").unwrap().1
        )
    );
}

#[test]
fn nagios_labels_name_env_and_check_and_ok_has_no_long_output() {
    let s = stub();
    let dir = TempDir::new();
    dir.write(
        "infra.toml",
        format!(
            "project = \"pim\"\n[env.prod]\ndocker = \"local\"\n[[check]]\nname = \"bob's page\"\nurl = \"{}\"\n",
            s.url_for("/p")
        ),
    );
    let out = hc()
        .current_dir(dir.path())
        .args(["--format", "nagios"])
        .assert_code(0);
    assert_eq!(out.stdout.lines().count(), 1, "{out}");
    let re = Regex::new(r"^HEALTHCHECK OK: 1 ok, 0 warning, 0 critical, 0 unknown \| 'prod/bob''s page time'=\d+\.\d{3}s;;;0;$").unwrap();
    assert!(re.is_match(out.stdout.trim_end()), "{out}");
}

/// `name{labels} value` lines, after `# HELP` and `# TYPE` for each family.
fn samples(text: &str) -> Vec<(String, String)> {
    let sample =
        Regex::new(r#"^([a-z_]+)(\{check="[^"]*",env="[^"]*"\}) (-?[\d.e+-]+|NaN)$"#).unwrap();
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
            continue;
        }
        let c = sample
            .captures(line)
            .unwrap_or_else(|| panic!("not a sample: {line:?}\n{text}"));
        out.push((format!("{}{}", &c[1], &c[2]), c[3].to_string()));
    }
    out
}

#[test]
fn prometheus_format_is_blackbox_like() {
    let s = stub();
    let ok = s.url_for("/ok");
    let bad = closed_url();
    let out = hc()
        .args(["url", &ok, &bad, "--format", "prometheus"])
        .assert_code(2);
    let got = samples(&out.stdout);
    let value = |key: String| {
        got.iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no {key}\n{out}"))
    };
    let l = |name: &str| format!("{{check=\"{name}\",env=\"\"}}");
    assert_eq!(value(format!("probe_success{}", l(&ok))), "1");
    assert_eq!(value(format!("probe_success{}", l(&bad))), "0");
    assert_eq!(value(format!("probe_http_status_code{}", l(&ok))), "200");
    assert_eq!(value(format!("healthcheck_status{}", l(&ok))), "0");
    assert_eq!(value(format!("healthcheck_status{}", l(&bad))), "2");
    assert!(
        value(format!("probe_duration_seconds{}", l(&ok)))
            .parse::<f64>()
            .unwrap()
            < 10.0
    );
    assert!(out.stdout.contains("# TYPE probe_success gauge\n"), "{out}");
}

#[test]
fn textfile_is_written_atomically_beside_the_stdout_format() {
    let s = stub();
    let dir = TempDir::new();
    let metrics = dir.mkdir("textfile");
    dir.write("textfile/healthcheck_prod.prom", "stale\n");
    dir.write(
        "infra.toml",
        format!(
            "project = \"pim\"\n[env.prod]\ndocker = \"local\"\n[env.dev]\ndocker = \"local\"\n\
             [[check]]\nname = \"front\"\nurl = \"{}\"\n",
            s.url_for("/f")
        ),
    );
    let textfile = metrics.to_str().unwrap();
    let out = hc()
        .current_dir(dir.path())
        .args(["--env", "prod", "--textfile", textfile, "--format", "json"])
        .assert_code(0);
    assert_eq!(
        out.records_of("check").len(),
        1,
        "stdout keeps its format\n{out}"
    );
    let text = dir.read("textfile/healthcheck_prod.prom");
    let got = samples(&text);
    assert!(
        got.contains(&(
            "probe_success{check=\"front\",env=\"prod\"}".into(),
            "1".into()
        )),
        "{text}"
    );
    assert!(
        got.contains(&(
            "healthcheck_status{check=\"front\",env=\"prod\"}".into(),
            "0".into()
        )),
        "{text}"
    );

    // Without --env: every env in one healthcheck.prom. Nothing else is left behind.
    hc().current_dir(dir.path())
        .args(["--textfile", textfile])
        .assert_code(0);
    let all = samples(&dir.read("textfile/healthcheck.prom"));
    assert_eq!(
        all.iter()
            .filter(|(k, _)| k.starts_with("probe_success"))
            .count(),
        2
    );
    let mut files: Vec<String> = std::fs::read_dir(&metrics)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files, ["healthcheck.prom", "healthcheck_prod.prom"]);
}

#[test]
fn an_unwritable_textfile_is_unknown_but_does_not_hide_critical() {
    let s = stub();
    let dir = TempDir::new();
    let missing = dir.join("no/such/dir");
    let missing = missing.to_str().unwrap();
    let out = hc()
        .args(["url", &s.url_for("/ok"), "--textfile", missing])
        .assert_code(3);
    assert!(out.stderr.contains("--textfile"), "{out}");
    assert_eq!(
        out.records_of("check").len(),
        1,
        "results are still on stdout\n{out}"
    );
    hc().args(["url", &closed_url(), "--textfile", missing])
        .assert_code(2);
}
