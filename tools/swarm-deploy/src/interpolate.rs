//! Compose-file variable substitution: `$NAME`, `${NAME}`, `${NAME:-default}` (unset or
//! empty), `${NAME-default}` (unset), `${NAME:?message}` / `${NAME?message}` (required), and
//! `$$` for a literal `$`. Applied to every string value of the parsed file, as compose does,
//! so a value containing `: ` or `#` cannot change the YAML's structure.

use std::collections::BTreeMap;

/// What went wrong in one string: the variables that have no value (in order of appearance),
/// or a syntax error.
#[derive(Debug, PartialEq, Eq)]
pub enum Problem {
    Missing(Vec<String>),
    Syntax(String),
}

/// Substitute `vars` into `s`.
pub fn substitute(s: &str, vars: &BTreeMap<String, String>) -> Result<String, Problem> {
    let mut out = String::with_capacity(s.len());
    let mut missing = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        if let Some(r) = rest.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(r) = rest.strip_prefix('{') {
            let end = closing_brace(r)
                .ok_or_else(|| Problem::Syntax(format!("unclosed ${{ in {s:?}")))?;
            let inner = &r[..end];
            rest = &r[end + 1..];
            match braced(inner, vars)? {
                Some(v) => out.push_str(&v),
                None => missing.push(name_of(inner).to_string()),
            }
        } else {
            let len = rest
                .char_indices()
                .find(|&(j, c)| {
                    !(c == '_' || c.is_ascii_alphanumeric()) || (j == 0 && c.is_ascii_digit())
                })
                .map(|(j, _)| j)
                .unwrap_or(rest.len());
            if len == 0 {
                return Err(Problem::Syntax(format!(
                    "a lone $ in {s:?}: write $$ for a literal dollar sign"
                )));
            }
            let name = &rest[..len];
            rest = &rest[len..];
            match vars.get(name) {
                Some(v) => out.push_str(v),
                None => missing.push(name.to_string()),
            }
        }
    }
    out.push_str(rest);
    if missing.is_empty() {
        Ok(out)
    } else {
        Err(Problem::Missing(missing))
    }
}

/// The index of the `}` closing a `${`, allowing nested `${…}` in a default.
fn closing_brace(s: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => return Some(i),
            '}' => depth -= 1,
            _ => {}
        }
    }
    None
}

fn name_of(inner: &str) -> &str {
    let end = inner
        .find(|c: char| !(c == '_' || c.is_ascii_alphanumeric()))
        .unwrap_or(inner.len());
    &inner[..end]
}

/// The value of `${inner}`; `None` when the variable has no value and no default.
fn braced(inner: &str, vars: &BTreeMap<String, String>) -> Result<Option<String>, Problem> {
    let name = name_of(inner);
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(Problem::Syntax(format!(
            "invalid variable name in ${{{inner}}}"
        )));
    }
    let op = &inner[name.len()..];
    let value = vars.get(name);
    let (unset_or_empty, default) = if let Some(d) = op.strip_prefix(":-") {
        (true, Some(d))
    } else if let Some(d) = op.strip_prefix('-') {
        (false, Some(d))
    } else if let Some(m) = op.strip_prefix(":?").or_else(|| op.strip_prefix('?')) {
        let empty_counts = op.starts_with(':');
        return match value {
            Some(v) if !(empty_counts && v.is_empty()) => Ok(Some(v.clone())),
            _ if m.is_empty() => Ok(None),
            _ => Err(Problem::Syntax(format!("{name}: {m}"))),
        };
    } else if op.is_empty() {
        return Ok(value.cloned());
    } else {
        return Err(Problem::Syntax(format!("unsupported ${{{inner}}}")));
    };
    match value {
        Some(v) if !(unset_or_empty && v.is_empty()) => Ok(Some(v.clone())),
        _ => {
            let d = default.unwrap_or_default();
            match substitute(d, vars) {
                Ok(v) => Ok(Some(v)),
                Err(Problem::Missing(_)) => Ok(None),
                Err(e) => Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> BTreeMap<String, String> {
        [("TAG", "abc123"), ("EMPTY", ""), ("N", "4")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn forms() {
        let v = vars();
        assert_eq!(substitute("img:${TAG}", &v).unwrap(), "img:abc123");
        assert_eq!(substitute("img:$TAG-x", &v).unwrap(), "img:abc123-x");
        assert_eq!(substitute("${N:-1}", &v).unwrap(), "4");
        assert_eq!(substitute("${NOPE:-1}", &v).unwrap(), "1");
        assert_eq!(substitute("${EMPTY:-d}", &v).unwrap(), "d");
        assert_eq!(substitute("${EMPTY-d}", &v).unwrap(), "");
        assert_eq!(substitute("${NOPE-${TAG}}", &v).unwrap(), "abc123");
        assert_eq!(substitute("cost $$5", &v).unwrap(), "cost $5");
        assert_eq!(substitute("no vars", &v).unwrap(), "no vars");
    }

    #[test]
    fn missing_are_all_listed() {
        assert_eq!(
            substitute("${A}/$B/${TAG}/${C:?}", &vars()),
            Err(Problem::Missing(vec!["A".into(), "B".into(), "C".into()]))
        );
    }

    #[test]
    fn errors() {
        let v = vars();
        assert!(matches!(substitute("${TAG", &v), Err(Problem::Syntax(_))));
        assert!(matches!(substitute("a $ b", &v), Err(Problem::Syntax(_))));
        assert!(matches!(substitute("${1X}", &v), Err(Problem::Syntax(_))));
        assert_eq!(
            substitute("${NOPE:?set NOPE}", &v),
            Err(Problem::Syntax("NOPE: set NOPE".into()))
        );
    }
}
