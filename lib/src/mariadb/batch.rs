//! The text the `mariadb` client prints in batch mode, and SQL identifier quoting.
//!
//! `--batch --skip-column-names` without `--raw` escapes tab, newline, backslash and NUL
//! inside values, so rows split safely on `\n` and fields on `\t`. It prints NULL as the
//! bare word `NULL`, which a string `'NULL'` also prints as: queries whose text columns
//! may be NULL select `HEX(col)` instead, whose digits never spell `NULL`.

use crate::error::{Error, Result};

/// Rows of unescaped fields.
pub(crate) fn parse_rows(out: &str) -> Vec<Vec<String>> {
    out.lines()
        .map(|line| line.split('\t').map(unescape).collect())
        .collect()
}

fn unescape(field: &str) -> String {
    let mut s = String::with_capacity(field.len());
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            s.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => s.push('\t'),
            Some('n') => s.push('\n'),
            Some('0') => s.push('\0'),
            Some('\\') => s.push('\\'),
            Some(other) => {
                s.push('\\');
                s.push(other);
            }
            None => s.push('\\'),
        }
    }
    s
}

/// A `HEX(col)` field: `None` for NULL.
pub(crate) fn unhex(field: &str) -> Result<Option<String>> {
    if field == "NULL" {
        return Ok(None);
    }
    let bytes = hex::decode(field)
        .map_err(|_| Error::data(format!("mariadb printed {field:?} where hex was expected")))?;
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| Error::data("mariadb returned a name that is not UTF-8"))
}

/// `name` as a backtick-quoted identifier (backticks inside doubled).
pub(crate) fn quote_ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// A value for a MySQL option file: double-quoted, with the escapes the option-file
/// reader undoes (`\\`, `\"`, `\n`, `\r`, `\t`), so `#`, quotes and spaces survive.
pub(crate) fn option_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_unescape_tabs_newlines_and_backslashes() {
        let rows = parse_rows("1\ta\\tb\n2\tc\\\\d\\ne\n\n");
        assert_eq!(
            rows,
            vec![
                vec!["1".to_string(), "a\tb".into()],
                vec!["2".into(), "c\\d\ne".into()],
                vec!["".into()],
            ]
        );
        assert!(parse_rows("").is_empty());
    }

    #[test]
    fn hex_fields_and_null() {
        assert_eq!(unhex("612062").unwrap().as_deref(), Some("a b"));
        assert_eq!(unhex("").unwrap().as_deref(), Some(""));
        assert_eq!(unhex("NULL").unwrap(), None);
        assert!(unhex("zz").is_err());
        assert!(unhex("FF").is_err());
    }

    #[test]
    fn quoting() {
        assert_eq!(quote_ident("we`ird"), "`we``ird`");
        assert_eq!(option_value("a\"b\\c #d\t"), "\"a\\\"b\\\\c #d\\t\"");
    }
}
