//! Cron files read the way cron reads them, for the tests of the shipped entries: `NAME=value`
//! lines set variables; every other non-comment line is five time fields, a user and a
//! command, in which `\%` is a literal percent sign and a bare `%` would end the command.

use std::collections::BTreeMap;

/// One entry of a system crontab (`/etc/cron.d` format).
#[derive(Debug, Clone)]
pub struct Entry {
    /// 1-based line number in the file.
    pub line: usize,
    /// The five time fields.
    pub time: Vec<String>,
    pub user: String,
    /// What cron hands to the shell (`\%` already a literal `%`).
    pub shell: String,
}

/// The file's `NAME=value` lines and its entries. Panics naming the line where a bare `%`
/// would cut a command short.
pub fn parse(text: &str) -> (BTreeMap<String, String>, Vec<Entry>) {
    let mut vars = BTreeMap::new();
    let mut entries = Vec::new();
    for (i, l) in text.lines().enumerate() {
        let t = l.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        if let Some((k, v)) = assignment(t) {
            vars.insert(k.to_string(), v.to_string());
            continue;
        }
        let mut rest = t;
        let mut fields = Vec::new();
        for _ in 0..6 {
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            fields.push(rest[..end].to_string());
            rest = rest[end..].trim_start();
        }
        let user = fields.pop().unwrap_or_default();
        entries.push(Entry {
            line: i + 1,
            time: fields,
            user,
            shell: as_cron_runs_it(i + 1, rest),
        });
    }
    (vars, entries)
}

fn assignment(line: &str) -> Option<(&str, &str)> {
    line.split_once('=')
        .filter(|(k, _)| !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
}

/// What cron hands to the shell: `\%` is a literal percent sign, a bare `%` ends the command.
fn as_cron_runs_it(line: usize, command: &str) -> String {
    let mut out = String::new();
    let mut chars = command.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'%') => {
                out.push('%');
                chars.next();
            }
            '%' => panic!("line {line}: a bare % ends the command there: write \\%"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_variables_and_escaped_percent_signs() {
        let (vars, entries) =
            parse("# c\nSHELL=/bin/sh\n\n*/5 * * * *  root  date +\\%s >/dev/null\n");
        assert_eq!(vars.get("SHELL").map(String::as_str), Some("/bin/sh"));
        assert_eq!(entries.len(), 1);
        let e = &entries[0];
        assert_eq!((e.line, e.user.as_str()), (4, "root"));
        assert_eq!(e.time, ["*/5", "*", "*", "*", "*"]);
        assert_eq!(e.shell, "date +%s >/dev/null");
    }

    #[test]
    #[should_panic(expected = "line 1: a bare %")]
    fn a_bare_percent_sign_is_refused() {
        parse("0 * * * * root date +%s\n");
    }
}
