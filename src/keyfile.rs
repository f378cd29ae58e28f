//! Key files: 32 random bytes written as 64 hex characters, created 0600 on first use.
//!
//! Both the store's token key and the anonymizer's pseudonym key live in such files, so
//! operators can mount them as secrets and back them up; losing the store key locks every
//! account out, losing the pseudonym key changes every pseudonym.

use std::io::Write;
use std::path::{Path, PathBuf};

/// A key file that cannot be read, parsed or created.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot read key file {} ({purpose}): {source}", path.display())]
    Read { path: PathBuf, purpose: &'static str, source: std::io::Error },
    #[error("key file {} ({purpose}) must hold 64 hexadecimal characters (32 bytes)", path.display())]
    Malformed { path: PathBuf, purpose: &'static str },
    #[error("cannot create key file {} ({purpose}): {source}", path.display())]
    Create { path: PathBuf, purpose: &'static str, source: std::io::Error },
    #[error("no random source for a new key: {0}")]
    Random(String),
}

/// 32 fresh random bytes from the operating system.
pub fn random_key() -> Result<[u8; 32], KeyFileError> {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).map_err(|e| KeyFileError::Random(e.to_string()))?;
    Ok(key)
}

/// Reads the key at `path`, or creates it (mode 0600) when absent and logs where.
/// `purpose` names the setting in messages (e.g. `store.key_file`).
pub fn load_or_create(path: &Path, purpose: &'static str) -> Result<[u8; 32], KeyFileError> {
    match read_small(path) {
        Ok(text) => {
            if let Some(mode) = readable_by_others(path) {
                tracing::warn!(
                    path = %path.display(),
                    setting = purpose,
                    mode = format!("{mode:o}"),
                    "key file is readable by other users; chmod 600 it (a mounted secret: defaultMode 0400)"
                );
            }
            parse(&text).ok_or_else(|| KeyFileError::Malformed { path: path.to_owned(), purpose })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => create(path, purpose),
        Err(source) => Err(KeyFileError::Read { path: path.to_owned(), purpose, source }),
    }
}

/// A key file's text, refusing files larger than any key file (a wrong path to a big
/// file must not be read whole).
fn read_small(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)?.take(4096).read_to_string(&mut text)?;
    Ok(text)
}

/// The file's permission bits when group or others may read or write it.
pub fn readable_by_others(path: &Path) -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
        (mode & 0o066 != 0).then_some(mode)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

fn parse(text: &str) -> Option<[u8; 32]> {
    let bytes = hex::decode(text.trim()).ok()?;
    bytes.try_into().ok()
}

fn create(path: &Path, purpose: &'static str) -> Result<[u8; 32], KeyFileError> {
    let key = random_key()?;
    let err = |source| KeyFileError::Create { path: path.to_owned(), purpose, source };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(err)?;
    file.write_all(format!("{}\n", hex::encode(key)).as_bytes()).map_err(err)?;
    file.sync_all().map_err(err)?;
    tracing::warn!(
        path = %path.display(),
        setting = purpose,
        "created a new key file; back it up and keep it secret: losing it cannot be undone"
    );
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_0600_then_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/k.key");
        let a = load_or_create(&path, "store.key_file").unwrap();
        let b = load_or_create(&path, "store.key_file").unwrap();
        assert_eq!(a, b);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }

    #[test]
    fn whitespace_is_ignored_and_garbage_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        std::fs::write(&path, format!("  {}\n\n", "ab".repeat(32))).unwrap();
        assert_eq!(load_or_create(&path, "anonymizer.key_file").unwrap(), [0xab; 32]);
        std::fs::write(&path, "not hex").unwrap();
        let err = load_or_create(&path, "anonymizer.key_file").unwrap_err().to_string();
        assert!(err.contains("anonymizer.key_file") && err.contains("64 hexadecimal"), "{err}");
        assert!(!err.contains("not hex"));
        // A big file at the key's path is not read whole, and is refused.
        std::fs::write(&path, "a".repeat(1 << 20)).unwrap();
        assert!(load_or_create(&path, "anonymizer.key_file").is_err());
    }

    #[cfg(unix)]
    #[test]
    fn loose_permissions_are_seen() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        load_or_create(&path, "store.key_file").unwrap();
        assert_eq!(readable_by_others(&path), None);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(readable_by_others(&path), Some(0o644));
    }
}
