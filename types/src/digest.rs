//! Module digests: `sha256:<64 lowercase hex digits>`.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

/// The sha256 of a module's bytes; the name of the module in the master's artifact store and
/// in every agent's cache.
///
/// Parsing accepts only the canonical text (`sha256:` and 64 *lowercase* hex digits), so one
/// module has one spelling and digests compare as strings too.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; 32]);

impl Digest {
    /// The text before the hex digits.
    pub const PREFIX: &'static str = "sha256:";

    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// Wraps a raw sha256 (from an incremental hasher, say).
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw sha256.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lowercase hex, without the `sha256:` prefix.
    pub fn hex(&self) -> String {
        use fmt::Write as _;
        let mut s = String::with_capacity(64);
        for b in self.0 {
            // Writing to a String cannot fail.
            let _ = write!(s, "{b:02x}");
        }
        s
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", Self::PREFIX, self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A string was not a canonical module digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a module digest (expected \"sha256:\" and 64 lowercase hex digits)")]
pub struct DigestError(pub String);

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, DigestError> {
        let bad = || DigestError(s.chars().take(80).collect());
        let hex = s.strip_prefix(Self::PREFIX).ok_or_else(bad)?.as_bytes();
        if hex.len() != 64 {
            return Err(bad());
        }
        let nibble = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        };
        let mut out = [0u8; 32];
        for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
            let (hi, lo) = (nibble(pair[0]), nibble(pair[1]));
            *byte = (hi.ok_or_else(bad)? << 4) | lo.ok_or_else(bad)?;
        }
        Ok(Self(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_matches_sha256() {
        let d = Digest::of(b"");
        let text = d.to_string();
        assert_eq!(
            text,
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(text.parse::<Digest>().unwrap(), d);
        assert_eq!(Digest::from_bytes(*d.as_bytes()), d);
    }

    #[test]
    fn rejects_non_canonical_text() {
        let hex = Digest::of(b"x").hex();
        for bad in [
            hex.clone(),                              // no prefix
            format!("sha256:{}", &hex[..63]),         // short
            format!("sha256:{hex}0"),                 // long
            format!("sha256:{}", hex.to_uppercase()), // not canonical
            format!("sha512:{hex}"),
            format!("sha256:{}g", &hex[..63]),
            format!("sha256:{}é", &hex[..62]),
        ] {
            assert!(bad.parse::<Digest>().is_err(), "{bad}");
        }
    }
}
