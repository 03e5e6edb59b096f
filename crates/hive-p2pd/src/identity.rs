//! The node's identity key and the IPC token, kept in the data directory.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::{bail, Context, Result};
use libp2p::identity::Keypair;

/// Create a directory (and its parents) readable only by its owner.
pub fn ensure_private_dir(dir: &Path) -> Result<()> {
    if !dir.exists() {
        fs::create_dir_all(dir).with_context(|| {
            format!(
                "cannot create the data directory {}; pass --data-dir with a directory this user can write (`hive doctor --data-dir DIR` checks it)",
                dir.display()
            )
        })?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot set mode 0700 on {}", dir.display()))?;
    }
    Ok(())
}

/// Write `bytes` to a new file with mode 0600 (never world-readable, not
/// even for an instant), failing if the file exists.
fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| {
            format!(
                "cannot create {}; is the data directory writable by this user?",
                path.display()
            )
        })?;
    file.write_all(bytes)?;
    file.sync_all()?;
    Ok(())
}

/// Load the keypair at `path`, or create an Ed25519 one there.
pub fn load_or_create_keypair(path: &Path) -> Result<Keypair> {
    if path.exists() {
        let bytes = fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        if let Some(keypair) = legacy_ed25519(&bytes) {
            return Ok(keypair);
        }
        return Keypair::from_protobuf_encoding(&bytes).with_context(|| {
            format!(
                "{} is not a libp2p private key (protobuf encoding); move it away to create a new identity",
                path.display()
            )
        });
    }
    if let Some(parent) = path.parent() {
        ensure_private_dir(parent)?;
    }
    let keypair = Keypair::generate_ed25519();
    let bytes = keypair
        .to_protobuf_encoding()
        .context("cannot encode the new key")?;
    write_private(path, &bytes)?;
    tracing::info!(path = %path.display(), "created a new identity");
    Ok(keypair)
}

/// An Ed25519 `PrivateKey` protobuf whose data is 96 bytes: the older
/// encoding (32-byte seed, then the public key, then the public key again)
/// that go- and js-libp2p still write and accept. rust-libp2p reads only the
/// 64-byte form, so the seed is taken and checked against the public key.
fn legacy_ed25519(bytes: &[u8]) -> Option<Keypair> {
    // Field 1 (key type, varint 1 = Ed25519), field 2 (length-delimited data).
    let rest = bytes.strip_prefix(&[0x08, 0x01, 0x12])?;
    let (len, rest) = (*rest.first()? as usize, &rest[1..]);
    if len != 96 || rest.len() != 96 {
        return None;
    }
    let mut seed = [0u8; 32];
    seed.copy_from_slice(&rest[..32]);
    let secret = libp2p::identity::ed25519::SecretKey::try_from_bytes(&mut seed).ok()?;
    let keypair = libp2p::identity::ed25519::Keypair::from(secret);
    (keypair.public().to_bytes()[..] == rest[32..64]).then(|| keypair.into())
}

/// The IPC token: from the environment, else a token file, else a new random
/// token written to `<data-dir>/ipc.token`.
pub fn load_token(
    env_value: Option<String>,
    token_file: Option<&Path>,
    data_dir: &Path,
) -> Result<String> {
    if let Some(token) = env_value.filter(|t| !t.is_empty()) {
        return Ok(token);
    }
    if let Some(path) = token_file {
        let token = fs::read_to_string(path)
            .with_context(|| format!("cannot read token file {}", path.display()))?;
        let token = token.trim().to_string();
        if token.is_empty() {
            bail!("token file {} is empty", path.display());
        }
        return Ok(token);
    }
    let path = data_dir.join("ipc.token");
    let token = hex::encode(rand::random::<[u8; 32]>());
    if path.exists() {
        fs::remove_file(&path).with_context(|| format!("cannot replace {}", path.display()))?;
    }
    write_private(&path, token.as_bytes())?;
    tracing::info!(path = %path.display(), "no token given: wrote a new IPC token");
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_created_private_and_reloaded() {
        let dir = tempfile::TempDir::new().unwrap();
        let path = dir.path().join("sub/identity.key");
        let first = load_or_create_keypair(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = load_or_create_keypair(&path).unwrap();
        assert_eq!(first.public().to_peer_id(), again.public().to_peer_id());
    }

    #[test]
    fn garbage_key_file_is_refused() {
        let dir = tempfile::TempDir::new().unwrap();
        let path = dir.path().join("identity.key");
        fs::write(&path, b"not a key").unwrap();
        let e = load_or_create_keypair(&path).unwrap_err();
        assert!(e.to_string().contains("not a libp2p private key"), "{e}");
    }

    #[test]
    fn token_sources_in_order() {
        let dir = tempfile::TempDir::new().unwrap();
        assert_eq!(
            load_token(Some("env".into()), None, dir.path()).unwrap(),
            "env"
        );
        let file = dir.path().join("t");
        fs::write(&file, " from-file \n").unwrap();
        assert_eq!(
            load_token(None, Some(&file), dir.path()).unwrap(),
            "from-file"
        );
        let generated = load_token(None, None, dir.path()).unwrap();
        assert_eq!(generated.len(), 64);
        let stored = fs::read_to_string(dir.path().join("ipc.token")).unwrap();
        assert_eq!(stored, generated);
        let mode = fs::metadata(dir.path().join("ipc.token"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[cfg(test)]
mod legacy_tests {
    use super::*;

    #[test]
    fn the_96_byte_ed25519_encoding_is_read_and_checked() {
        let keypair = libp2p::identity::ed25519::Keypair::generate();
        let mut data = keypair.secret().as_ref().to_vec();
        data.extend_from_slice(&keypair.public().to_bytes());
        data.extend_from_slice(&keypair.public().to_bytes());
        let mut file = vec![0x08, 0x01, 0x12, 96];
        file.extend_from_slice(&data);
        let read = legacy_ed25519(&file).expect("readable");
        let expected: Keypair = keypair.clone().into();
        assert_eq!(read.public().to_peer_id(), expected.public().to_peer_id());
        // A mismatched public key is not accepted.
        file[4 + 40] ^= 1;
        assert!(legacy_ed25519(&file).is_none());
        // The 64-byte form is left to rust-libp2p.
        let modern = expected.to_protobuf_encoding().unwrap();
        assert!(legacy_ed25519(&modern).is_none());
        assert!(Keypair::from_protobuf_encoding(&modern).is_ok());
    }
}
