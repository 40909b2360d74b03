//! The credentials file: principals and the SHA-256 of their tokens, never the tokens.
//!
//! ```toml
//! [[principal]]
//! name = "alice"
//! token_sha256 = "5e88489..."          # what `corral token new alice` prints
//! expires = "2027-01-01T00:00:00Z"     # optional
//! ```
//!
//! A principal may have several tokens (one entry each), so a token can be rotated without a
//! gap. Tokens are 256 random bits, so one fast hash is enough to keep the file from being a
//! list of secrets: there is nothing to guess that a slow hash would protect.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;
use sha2::{Digest as _, Sha256};

pub use corral_proto::auth::check_principal;

/// The principals and their tokens' hashes.
#[derive(Debug, Clone, Default)]
pub(crate) struct Credentials {
    by_hash: HashMap<[u8; 32], Entry>,
}

#[derive(Debug, Clone)]
struct Entry {
    principal: Arc<str>,
    expires: Option<jiff::Timestamp>,
}

/// Why a token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    Unknown,
    Expired { principal: Arc<str> },
}

/// A new random token: 64 hex digits (256 bits).
pub fn new_token() -> String {
    let bytes: [u8; 32] = rand::random();
    hex(&bytes)
}

/// The `token_sha256` of `token` in a credentials file.
pub fn token_sha256(token: &str) -> String {
    hex(&Sha256::digest(token.trim().as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Credentials {
    pub(crate) fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
        Self::parse(&text)
    }

    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let file: File = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut by_hash = HashMap::new();
        for (i, p) in file.principal.into_iter().enumerate() {
            let at = |e: String| format!("[[principal]] number {} ({:?}): {e}", i + 1, p.name);
            check_principal(&p.name).map_err(at)?;
            let hash = parse_hash(&p.token_sha256).map_err(at)?;
            let expires = p
                .expires
                .map(|e| {
                    e.parse::<jiff::Timestamp>()
                        .map_err(|err| at(format!("expires {e:?}: {err}")))
                })
                .transpose()?;
            let entry = Entry {
                principal: p.name.as_str().into(),
                expires,
            };
            if by_hash.insert(hash, entry).is_some() {
                return Err(at("the same token_sha256 appears twice".into()));
            }
        }
        Ok(Self { by_hash })
    }

    /// The principal `token` belongs to, if it is known and not expired at `now`.
    pub(crate) fn principal(&self, token: &str, now: jiff::Timestamp) -> Result<Arc<str>, Refusal> {
        let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let entry = self.by_hash.get(&hash).ok_or(Refusal::Unknown)?;
        match entry.expires {
            Some(expires) if expires <= now => Err(Refusal::Expired {
                principal: entry.principal.clone(),
            }),
            _ => Ok(entry.principal.clone()),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.by_hash.len()
    }
}

fn parse_hash(s: &str) -> Result<[u8; 32], String> {
    let bad = || format!("token_sha256 is 64 hex digits (got {} characters)", s.len());
    if s.len() != 64 {
        return Err(bad());
    }
    let mut hash = [0u8; 32];
    for (i, byte) in hash.iter_mut().enumerate() {
        *byte =
            u8::from_str_radix(s.get(2 * i..2 * i + 2).ok_or_else(bad)?, 16).map_err(|_| bad())?;
    }
    Ok(hash)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    principal: Vec<PrincipalFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PrincipalFile {
    name: String,
    token_sha256: String,
    #[serde(default)]
    expires: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> jiff::Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn a_token_names_its_principal_until_it_expires() {
        let (alice, bob) = (new_token(), new_token());
        let file = format!(
            "[[principal]]\nname = \"alice\"\ntoken_sha256 = \"{}\"\n\
             [[principal]]\nname = \"bob\"\ntoken_sha256 = \"{}\"\nexpires = \"2027-01-01T00:00:00Z\"\n",
            token_sha256(&alice),
            token_sha256(&bob).to_uppercase(),
        );
        let creds = Credentials::parse(&file).unwrap();
        let before = at("2026-12-31T23:59:59Z");
        assert_eq!(creds.principal(&alice, before).unwrap().as_ref(), "alice");
        assert_eq!(creds.principal(&bob, before).unwrap().as_ref(), "bob");
        assert_eq!(
            creds.principal(&bob, at("2027-01-01T00:00:00Z")),
            Err(Refusal::Expired {
                principal: "bob".into()
            })
        );
        assert_eq!(creds.principal("guess", before), Err(Refusal::Unknown));
        assert_eq!(creds.len(), 2);
    }

    #[test]
    fn the_file_holds_no_secret() {
        let token = new_token();
        assert_eq!(token.len(), 64);
        assert!(!token_sha256(&token).contains(&token));
    }

    #[test]
    fn bad_files_are_refused_with_where_and_why() {
        let hash = token_sha256("t");
        for (text, says) in [
            (
                format!("[[principal]]\nname = \"\"\ntoken_sha256 = \"{hash}\""),
                "a principal's name is",
            ),
            (
                format!("[[principal]]\nname = \"a b\"\ntoken_sha256 = \"{hash}\""),
                "a principal's name is",
            ),
            (
                "[[principal]]\nname = \"a\"\ntoken_sha256 = \"abc\"".into(),
                "64 hex digits",
            ),
            (
                format!(
                    "[[principal]]\nname = \"a\"\ntoken_sha256 = \"{}\"",
                    "zz".repeat(32)
                ),
                "64 hex digits",
            ),
            (
                format!(
                    "[[principal]]\nname = \"a\"\ntoken_sha256 = \"{}é\"",
                    "0".repeat(62)
                ),
                "64 hex digits",
            ),
            (
                format!(
                    "[[principal]]\nname = \"a\"\ntoken_sha256 = \"{hash}\"\nexpires = \"soon\""
                ),
                "expires \"soon\"",
            ),
            (
                format!(
                    "[[principal]]\nname = \"a\"\ntoken_sha256 = \"{hash}\"\n[[principal]]\nname = \"b\"\ntoken_sha256 = \"{hash}\""
                ),
                "appears twice",
            ),
            (
                format!("[[principal]]\nname = \"a\"\ntoken = \"{hash}\""),
                "unknown field",
            ),
        ] {
            let e = Credentials::parse(&text).unwrap_err();
            assert!(e.contains(says), "{text:?}: {e}");
        }
    }
}
