//! Checks on the files a configuration names: PEM certificates, the private
//! key and its permissions. Each returns a message for an operator on
//! failure (the caller adds the file, line and key of the setting).

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Reads `path`, or says why it cannot be read.
fn read(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => format!("{what} file {} does not exist", path.display()),
        _ => format!("cannot read {what} file {}: {e}", path.display()),
    })
}

/// Describes a PEM decoding error.
fn pem_problem(path: &Path, e: &pem::Error) -> String {
    format!("{} is not valid PEM: {e}", path.display())
}

/// Checks that `path` is a PEM file holding at least one `CERTIFICATE`
/// section; returns how many it holds.
pub(crate) fn check_certificates(path: &Path, what: &str) -> Result<usize, String> {
    let pem = read(path, what)?;
    let mut n = 0;
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| pem_problem(path, &e))?;
        // An X.509 certificate is a DER SEQUENCE.
        if cert.first() != Some(&0x30) {
            return Err(format!(
                "{} holds a CERTIFICATE section that is not a DER certificate",
                path.display()
            ));
        }
        n += 1;
    }
    if n == 0 {
        return Err(format!(
            "{} holds no PEM certificate (no `-----BEGIN CERTIFICATE-----` section)",
            path.display()
        ));
    }
    Ok(n)
}

/// Checks that `path` holds a PEM private key (PKCS#8, SEC1 or PKCS#1) and
/// is readable by its owner only.
pub(crate) fn check_private_key(path: &Path) -> Result<(), String> {
    let pem = read(path, "private key")?;
    match PrivateKeyDer::from_pem_slice(&pem) {
        Ok(_) => {}
        Err(pem::Error::NoItemsFound) => {
            return Err(format!(
                "{} holds no PEM private key (expected a `PRIVATE KEY`, `EC PRIVATE KEY` or `RSA PRIVATE KEY` section)",
                path.display()
            ))
        }
        Err(e) => return Err(pem_problem(path, &e)),
    }
    let meta = std::fs::metadata(path)
        .map_err(|e| format!("cannot stat private key file {}: {e}", path.display()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "private key file {} has mode {mode:04o}, readable by group or others; restrict it with `chmod 600 {}`",
            path.display(),
            path.display()
        ));
    }
    Ok(())
}

/// Checks that `path` is a regular file we can read (its contents are
/// parsed later, by whatever uses it).
pub(crate) fn check_readable_file(path: &Path, what: &str) -> Result<(), String> {
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => format!("{what} file {} does not exist", path.display()),
        _ => format!("cannot stat {what} file {}: {e}", path.display()),
    })?;
    if !meta.is_file() {
        return Err(format!("{what} {} is not a regular file", path.display()));
    }
    std::fs::File::open(path)
        .map(drop)
        .map_err(|e| format!("cannot read {what} file {}: {e}", path.display()))
}

/// Checks that `path` is a readable regular file that neither group nor
/// others can read (it holds secrets or their hashes).
pub(crate) fn check_secret_file(path: &Path, what: &str) -> Result<(), String> {
    check_readable_file(path, what)?;
    let meta = std::fs::metadata(path)
        .map_err(|e| format!("cannot stat {what} file {}: {e}", path.display()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "{what} file {} has mode {mode:04o}, readable by group or others; restrict it with `chmod 600 {}`",
            path.display(),
            path.display()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    const CERT: &str = "-----BEGIN CERTIFICATE-----\nMAMCAQA=\n-----END CERTIFICATE-----\n";
    const KEY: &str = "-----BEGIN PRIVATE KEY-----\nMAMCAQA=\n-----END PRIVATE KEY-----\n";

    fn write(dir: &Path, name: &str, text: &str, mode: u32) -> std::path::PathBuf {
        let p = dir.join(name);
        fs::write(&p, text).expect("write");
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).expect("chmod");
        p
    }

    #[test]
    fn certificates() {
        let dir = tempfile::tempdir().expect("tempdir");
        let one = write(dir.path(), "one.pem", CERT, 0o644);
        assert_eq!(check_certificates(&one, "certificate"), Ok(1));
        let two = write(dir.path(), "two.pem", &format!("{CERT}{KEY}{CERT}"), 0o644);
        assert_eq!(check_certificates(&two, "certificate"), Ok(2));
        let none = write(dir.path(), "none.pem", KEY, 0o644);
        let e = check_certificates(&none, "CA").expect_err("no cert");
        assert!(e.contains("holds no PEM certificate"), "{e}");
        let junk = write(
            dir.path(),
            "junk.pem",
            "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
            0o644,
        );
        let e = check_certificates(&junk, "CA").expect_err("bad base64");
        assert!(e.contains("is not valid PEM"), "{e}");
        let not_der = write(
            dir.path(),
            "notder.pem",
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            0o644,
        );
        let e = check_certificates(&not_der, "CA").expect_err("not DER");
        assert!(e.contains("not a DER certificate"), "{e}");
        let e = check_certificates(&dir.path().join("absent.pem"), "CA").expect_err("absent");
        assert!(
            e.starts_with("CA file ") && e.ends_with("does not exist"),
            "{e}"
        );
    }

    #[test]
    fn private_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ok = write(dir.path(), "k.pem", KEY, 0o600);
        assert_eq!(check_private_key(&ok), Ok(()));
        let ec = write(
            dir.path(),
            "ec.pem",
            &KEY.replace("PRIVATE KEY", "EC PRIVATE KEY"),
            0o400,
        );
        assert_eq!(check_private_key(&ec), Ok(()));
        let open = write(dir.path(), "open.pem", KEY, 0o640);
        let e = check_private_key(&open).expect_err("group-readable");
        assert!(e.contains("has mode 0640"), "{e}");
        let cert = write(dir.path(), "c.pem", CERT, 0o600);
        let e = check_private_key(&cert).expect_err("not a key");
        assert!(e.contains("holds no PEM private key"), "{e}");
    }

    #[test]
    fn secret_and_readable_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ok = write(dir.path(), "t.toml", "", 0o600);
        assert_eq!(check_secret_file(&ok, "token"), Ok(()));
        let open = write(dir.path(), "o.toml", "", 0o604);
        let e = check_secret_file(&open, "token").expect_err("other-readable");
        assert!(
            e.contains("token file") && e.contains("has mode 0604"),
            "{e}"
        );
        assert_eq!(check_readable_file(&open, "JWKS"), Ok(()));
        let e = check_readable_file(&dir.path().join("absent.json"), "JWKS").expect_err("absent");
        assert!(
            e.starts_with("JWKS file ") && e.ends_with("does not exist"),
            "{e}"
        );
        let e = check_readable_file(dir.path(), "JWKS").expect_err("directory");
        assert!(e.contains("is not a regular file"), "{e}");
    }
}
