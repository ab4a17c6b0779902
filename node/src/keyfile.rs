//! Key files: a PKCS#8 Ed25519 private key, mode 0600. A key file that group or others can read
//! is refused, so a leaked permission is noticed before the key is used.

use std::fs;
use std::io::Write;
use std::path::Path;

use protocol::KeyPair;

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot read key file {path}: {cause}")]
    Read { path: String, cause: std::io::Error },
    #[error("cannot write key file {path}: {cause}")]
    Write { path: String, cause: std::io::Error },
    #[error(
        "key file {path} is readable by group or others (mode {mode:o}); run: chmod 600 {path}"
    )]
    Permissions { path: String, mode: u32 },
    #[error("key file {path} is not a regular file")]
    NotAFile { path: String },
    #[error("key file {path} does not hold an Ed25519 PKCS#8 key")]
    Invalid { path: String },
    #[error("key file {path} already exists; refusing to overwrite it")]
    Exists { path: String },
    #[error("key generation failed: {0}")]
    Generate(String),
}

/// Bits of the mode that must be clear: any permission for group or others.
const GROUP_OTHER_BITS: u32 = 0o077;

pub fn load(path: &Path) -> Result<KeyPair, KeyFileError> {
    let shown = path.display().to_string();
    let meta = fs::metadata(path).map_err(|cause| KeyFileError::Read {
        path: shown.clone(),
        cause,
    })?;
    if !meta.is_file() {
        return Err(KeyFileError::NotAFile { path: shown });
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & GROUP_OTHER_BITS != 0 {
            return Err(KeyFileError::Permissions { path: shown, mode });
        }
    }
    #[cfg(not(unix))]
    let _ = meta;
    let bytes = fs::read(path).map_err(|cause| KeyFileError::Read {
        path: shown.clone(),
        cause,
    })?;
    KeyPair::from_pkcs8(&bytes).map_err(|_| KeyFileError::Invalid { path: shown })
}

/// Create or truncate `path` readable by its owner only (mode 0600, also when the file
/// existed with another mode): for tokens, wrapped keys and other private state.
pub fn create_private(path: &Path) -> std::io::Result<fs::File> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let file = options.open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(fs::Permissions::from_mode(0o600))?;
    }
    Ok(file)
}

/// Write `key` to a new file with mode 0600 (created with that mode: never briefly readable).
pub fn save_new(path: &Path, key: &KeyPair) -> Result<(), KeyFileError> {
    let shown = path.display().to_string();
    let write_err = |cause| KeyFileError::Write {
        path: shown.clone(),
        cause,
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(write_err)?;
    }
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::AlreadyExists {
            KeyFileError::Exists {
                path: shown.clone(),
            }
        } else {
            KeyFileError::Write {
                path: shown.clone(),
                cause: source,
            }
        }
    })?;
    file.write_all(key.pkcs8()).map_err(write_err)?;
    file.sync_all().map_err(write_err)?;
    Ok(())
}

pub fn generate(path: &Path) -> Result<KeyPair, KeyFileError> {
    let key = KeyPair::generate().map_err(|e| KeyFileError::Generate(e.to_string()))?;
    save_new(path, &key)?;
    Ok(key)
}

/// Load the key at `path`, creating it on first use (servers' `DIR/identity.key`).
pub fn load_or_create(path: &Path) -> Result<KeyPair, KeyFileError> {
    if path.exists() {
        load(path)
    } else {
        generate(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_0600_and_open_keys_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k.key");
        let key = generate(&path).expect("generate");
        assert_eq!(load(&path).expect("load").entity(), key.entity());
        assert!(matches!(generate(&path), Err(KeyFileError::Exists { .. })));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                fs::metadata(&path).expect("meta").permissions().mode() & 0o777,
                0o600
            );
            fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).expect("chmod");
            let err = load(&path).expect_err("group-readable key must be refused");
            assert!(err.to_string().contains("chmod 600"), "{err}");
        }
        fs::write(dir.path().join("bad.key"), b"junk").expect("write");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(
                dir.path().join("bad.key"),
                fs::Permissions::from_mode(0o600),
            )
            .expect("chmod");
        }
        assert!(matches!(
            load(&dir.path().join("bad.key")),
            Err(KeyFileError::Invalid { .. })
        ));
    }
}
