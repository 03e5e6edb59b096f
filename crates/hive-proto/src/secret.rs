//! Comparing secrets: the daemon checks the IPC token of a hello frame, the
//! host the API tokens of requests, both with [`same_secret`].

/// Compare two secrets in time that depends only on their lengths, so that
/// response timing does not reveal how much of a guessed token was right.
pub fn same_secret(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::same_secret;

    #[test]
    fn equal_only_when_every_byte_and_the_length_match() {
        assert!(same_secret(b"secret", b"secret"));
        assert!(!same_secret(b"secret", b"secreT"));
        assert!(!same_secret(b"secret", b"secret2"));
        assert!(!same_secret(b"", b"x"));
        assert!(same_secret(b"", b""));
    }
}
