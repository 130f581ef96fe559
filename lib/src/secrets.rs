//! Secrets: from the environment (`NAME`) or a file named by `NAME_FILE` (the Docker secrets
//! convention), never from argv or infra.toml. A [`Secret`] prints as `***` and is wiped
//! from memory when dropped; errors name the variable and the file, never the value.

use std::ffi::OsString;
use std::fmt;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::error::{Error, Result};

/// A secret value. `Debug` and `Display` print `***`, so it cannot leak through logs or
/// error messages by accident; [`Secret::expose`] is the one way to the value.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Secret {
        Secret(value)
    }

    /// The value, for the one place that must send it (a header, a child's stdin).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        wipe(std::mem::take(&mut self.0).into_bytes());
    }
}

/// Overwrite a buffer before freeing it; `black_box` keeps the writes from being optimised
/// away as dead stores.
fn wipe(mut bytes: Vec<u8>) {
    bytes.iter_mut().for_each(|b| *b = 0);
    std::hint::black_box(&bytes);
}

/// The secret `name` from the process environment: `NAME`, else the file `NAME_FILE`
/// names; `Ok(None)` when neither is set.
pub fn get(name: &str) -> Result<Option<Secret>> {
    get_with(name, |key| std::env::var_os(key))
}

/// Like [`get`], but a missing secret is a configuration error saying how to set it.
pub fn require(name: &str) -> Result<Secret> {
    require_with(name, |key| std::env::var_os(key))
}

/// [`require`] over any variable lookup.
pub fn require_with(name: &str, lookup: impl Fn(&str) -> Option<OsString>) -> Result<Secret> {
    get_with(name, lookup)?.ok_or_else(|| {
        Error::config(format!(
            "secret {name} is not set: set {name} or {name}_FILE"
        ))
    })
}

/// [`get`] over any variable lookup, so callers (and tests) need not touch the process
/// environment, which is shared by every thread.
pub fn get_with(name: &str, lookup: impl Fn(&str) -> Option<OsString>) -> Result<Option<Secret>> {
    let file_var = format!("{name}_FILE");
    match (lookup(name), lookup(&file_var)) {
        (Some(_), Some(_)) => Err(Error::config(format!(
            "both {name} and {file_var} are set: use one"
        ))),
        (Some(value), None) => {
            let value = value.into_string().map_err(|bytes| {
                wipe(bytes.into_encoded_bytes());
                Error::config(format!("{name} is not valid UTF-8"))
            })?;
            if value.is_empty() {
                return Err(Error::config(format!("{name} is set but empty")));
            }
            Ok(Some(Secret(value)))
        }
        (None, Some(path)) => read_file(&file_var, Path::new(&path)).map(Some),
        (None, None) => Ok(None),
    }
}

/// Why a file with this mode must not hold a secret, if it must not.
fn too_open(mode: u32) -> Option<String> {
    (mode & 0o077 != 0).then(|| {
        format!(
            "permissions {:04o} are too open (group or others can access it); chmod 600 it",
            mode & 0o7777
        )
    })
}

/// Refuse a secrets file that another program will read (restic's password file) when
/// group or others can access it, with the same rule and words as `NAME_FILE`.
pub fn check_private_file(what: &str, path: &Path) -> Result<()> {
    let fail = |reason: String| Error::config(format!("{what} {}: {reason}", path.display()));
    let mode = std::fs::metadata(path)
        .map_err(|e| fail(format!("cannot read: {}", crate::error::io_reason(&e))))?
        .permissions()
        .mode();
    match too_open(mode) {
        Some(reason) => Err(fail(reason)),
        None => Ok(()),
    }
}

/// Read a secrets file, refusing one that group or others can access: the secret would
/// already be exposed to other users, and silently using it hides that.
fn read_file(var: &str, path: &Path) -> Result<Secret> {
    let what = format!("{var}={}", path.display());
    let fail = |reason: String| Error::config(format!("{what}: {reason}"));
    let mut file = std::fs::File::open(path)
        .map_err(|e| fail(format!("cannot read: {}", crate::error::io_reason(&e))))?;
    // The mode of the file we opened, not of whatever the path names a moment later.
    let mode = file
        .metadata()
        .map_err(|e| fail(format!("cannot read: {}", crate::error::io_reason(&e))))?
        .permissions()
        .mode();
    if let Some(reason) = too_open(mode) {
        return Err(fail(reason));
    }
    let mut bytes = Vec::new();
    if let Err(e) = file.read_to_end(&mut bytes) {
        wipe(bytes);
        return Err(fail(format!(
            "cannot read: {}",
            crate::error::io_reason(&e)
        )));
    }
    // Editors and `echo` end files with a newline; the secret does not include it.
    if bytes.ends_with(b"\r\n") {
        bytes.truncate(bytes.len() - 2);
    } else if bytes.ends_with(b"\n") {
        bytes.truncate(bytes.len() - 1);
    }
    let value = String::from_utf8(bytes).map_err(|e| {
        wipe(e.into_bytes());
        fail("the file is not valid UTF-8".into())
    })?;
    if value.is_empty() {
        return Err(fail("the file is empty".into()));
    }
    Ok(Secret(value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use std::collections::HashMap;
    use std::path::PathBuf;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let map: HashMap<String, OsString> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn secret_file(dir: &tempfile::TempDir, contents: &[u8], mode: u32) -> PathBuf {
        let path = dir.path().join("secret");
        std::fs::write(&path, contents).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    fn config_error(r: Result<Option<Secret>>) -> String {
        let e = r.expect_err("expected an error");
        assert_eq!(e.kind(), ErrorKind::Config, "{e}");
        e.to_string()
    }

    #[test]
    fn prints_as_stars() {
        let s = Secret::new("hunter2".into());
        assert_eq!(format!("{s} {s:?} {:?}", Some(&s)), "*** *** Some(***)");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn from_the_environment() {
        let s = get_with("TOKEN", vars(&[("TOKEN", "abc")]))
            .unwrap()
            .unwrap();
        assert_eq!(s.expose(), "abc");
        assert!(get_with("TOKEN", vars(&[])).unwrap().is_none());
        assert_eq!(
            config_error(get_with("TOKEN", vars(&[("TOKEN", "")]))),
            "TOKEN is set but empty"
        );
    }

    #[test]
    fn from_a_file_with_one_trailing_newline_stripped() {
        let dir = tempfile::tempdir().unwrap();
        let path = secret_file(&dir, b"s3cret \n\n", 0o600);
        let lookup = vars(&[("TOKEN_FILE", path.to_str().unwrap())]);
        assert_eq!(
            get_with("TOKEN", &lookup).unwrap().unwrap().expose(),
            "s3cret \n"
        );
        let path = secret_file(&dir, b"crlf\r\n", 0o400);
        let lookup = vars(&[("TOKEN_FILE", path.to_str().unwrap())]);
        assert_eq!(require_with("TOKEN", lookup).unwrap().expose(), "crlf");
    }

    #[test]
    fn both_set_is_an_error_naming_both() {
        let e = config_error(get_with(
            "TOKEN",
            vars(&[("TOKEN", "abc"), ("TOKEN_FILE", "/x")]),
        ));
        assert_eq!(e, "both TOKEN and TOKEN_FILE are set: use one");
    }

    #[test]
    fn open_files_are_refused_without_echoing_the_value() {
        let dir = tempfile::tempdir().unwrap();
        for mode in [0o644, 0o640, 0o604, 0o620] {
            let path = secret_file(&dir, b"topsecret\n", mode);
            let e = config_error(get_with(
                "RESTIC_PASSWORD",
                vars(&[("RESTIC_PASSWORD_FILE", path.to_str().unwrap())]),
            ));
            assert_eq!(
                e,
                format!(
                    "RESTIC_PASSWORD_FILE={}: permissions {mode:04o} are too open (group or others can access it); chmod 600 it",
                    path.display()
                )
            );
            assert!(!e.contains("topsecret"));
        }
    }

    #[test]
    fn unreadable_empty_and_binary_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let lookup = vars(&[("TOKEN_FILE", missing.to_str().unwrap())]);
        assert_eq!(
            config_error(get_with("TOKEN", lookup)),
            format!(
                "TOKEN_FILE={}: cannot read: No such file or directory",
                missing.display()
            )
        );
        let path = secret_file(&dir, b"\n", 0o600);
        let lookup = vars(&[("TOKEN_FILE", path.to_str().unwrap())]);
        assert_eq!(
            config_error(get_with("TOKEN", lookup)),
            format!("TOKEN_FILE={}: the file is empty", path.display())
        );
        let path = secret_file(&dir, b"\xff\xfe", 0o600);
        let lookup = vars(&[("TOKEN_FILE", path.to_str().unwrap())]);
        assert_eq!(
            config_error(get_with("TOKEN", lookup)),
            format!("TOKEN_FILE={}: the file is not valid UTF-8", path.display())
        );
    }

    #[test]
    fn require_says_how_to_set_a_missing_secret() {
        let e = require_with("CLOUDFLARE_API_TOKEN", vars(&[])).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert_eq!(e.to_string(), "secret CLOUDFLARE_API_TOKEN is not set: set CLOUDFLARE_API_TOKEN or CLOUDFLARE_API_TOKEN_FILE");
    }

    #[test]
    fn the_process_environment_is_the_default_lookup() {
        // A name no test sets: get() reads the real environment without mutating it.
        assert!(get("PIMOPS_TEST_SECRET_THAT_IS_NEVER_SET")
            .unwrap()
            .is_none());
        assert!(require("PIMOPS_TEST_SECRET_THAT_IS_NEVER_SET").is_err());
    }

    #[test]
    fn a_private_file_for_another_program_follows_the_same_rule() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        std::fs::write(&f, "x").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        check_private_file("restic password file", &f).unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o640)).unwrap();
        let e = check_private_file("restic password file", &f).unwrap_err();
        assert!(
            e.to_string().contains("permissions 0640 are too open"),
            "{e}"
        );
        assert_eq!(e.exit_code(), crate::ExitCode::Config);
    }
}
