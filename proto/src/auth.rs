//! Bearer tokens on the wire: what a client sends (`authorization: Bearer <token>`) and how a
//! server reads it. A token is a secret: it is never printed, and its `Debug` says only
//! whether there is one.

use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// The header (gRPC metadata key) carrying the token.
pub const AUTHORIZATION: &str = "authorization";

/// The environment variable clients read their token from.
pub const TOKEN_ENV: &str = "CORRAL_TOKEN";

/// Longest token accepted, in bytes (`corral token new` makes tokens of 64).
pub const MAX_TOKEN_BYTES: usize = 512;

/// Longest principal name, in bytes.
pub const MAX_PRINCIPAL_BYTES: usize = 128;

/// Checks a principal's name: 1 to 128 letters, digits, `.`, `_`, `-` or `@`.
pub fn check_principal(name: &str) -> Result<(), String> {
    let valid = (1..=MAX_PRINCIPAL_BYTES).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-@".contains(&b));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "a principal's name is 1 to {MAX_PRINCIPAL_BYTES} letters, digits, '.', '_', '-' or '@'"
        ))
    }
}

/// A client's connection: a channel that presents the client's token on every call.
pub type Conn = InterceptedService<Channel, Token>;

/// The token a client presents, or none (against a master that does not authenticate).
#[derive(Clone, Default)]
pub struct Token {
    header: Option<AsciiMetadataValue>,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = if self.header.is_some() {
            "<redacted>"
        } else {
            "<none>"
        };
        f.debug_tuple("Token").field(&shown).finish()
    }
}

/// Why a token cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Empty, too long, or holding characters a header cannot carry.
    #[error(
        "a token is 1 to {MAX_TOKEN_BYTES} printable ASCII characters without spaces (got {0} bytes)"
    )]
    Malformed(usize),
}

impl Token {
    /// No token.
    pub fn none() -> Self {
        Self::default()
    }

    /// `secret`, trimmed of surrounding whitespace (a token file's final newline).
    pub fn new(secret: &str) -> Result<Self, TokenError> {
        let secret = secret.trim();
        let malformed = || TokenError::Malformed(secret.len());
        if !valid(secret) {
            return Err(malformed());
        }
        let header =
            MetadataValue::try_from(format!("Bearer {secret}")).map_err(|_| malformed())?;
        Ok(Self {
            header: Some(header),
        })
    }

    /// The token in [`TOKEN_ENV`], or none when it is unset or empty.
    pub fn from_env() -> Result<Self, TokenError> {
        match std::env::var(TOKEN_ENV) {
            Ok(secret) if !secret.trim().is_empty() => Self::new(&secret),
            _ => Ok(Self::none()),
        }
    }

    /// Whether a token is set.
    pub fn is_set(&self) -> bool {
        self.header.is_some()
    }

    /// The `authorization` header's value, for HTTP clients.
    pub fn header(&self) -> Option<&str> {
        self.header.as_ref().and_then(|h| h.to_str().ok())
    }

    /// `channel`, presenting this token on every call.
    pub fn on(&self, channel: Channel) -> Conn {
        InterceptedService::new(channel, self.clone())
    }
}

impl Interceptor for Token {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(header) = &self.header {
            request.metadata_mut().insert(AUTHORIZATION, header.clone());
        }
        Ok(request)
    }
}

/// Whether `secret` can be a token.
fn valid(secret: &str) -> bool {
    (1..=MAX_TOKEN_BYTES).contains(&secret.len()) && secret.bytes().all(|b| b.is_ascii_graphic())
}

/// The token an `authorization` header carries: `Some` for `Bearer <token>` (the scheme in
/// any case, as RFC 9110 has it), `None` for anything else.
pub fn bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && valid(token)).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_sent_as_a_bearer_header_and_read_back() {
        let token = Token::new("s3cret-token\n").unwrap();
        let request = token.clone().call(tonic::Request::new(())).unwrap();
        let header = request.metadata().get(AUTHORIZATION).unwrap();
        assert_eq!(header.to_str().unwrap(), "Bearer s3cret-token");
        assert_eq!(bearer(header.to_str().unwrap()), Some("s3cret-token"));
        assert_eq!(bearer("bearer  s3cret-token "), Some("s3cret-token"));
    }

    #[test]
    fn no_token_sends_no_header() {
        let request = Token::none().call(tonic::Request::new(())).unwrap();
        assert!(request.metadata().get(AUTHORIZATION).is_none());
    }

    #[test]
    fn malformed_tokens_and_headers_are_refused() {
        for bad in ["", "   ", "two words", "tab\there", "é", &"x".repeat(513)] {
            assert!(Token::new(bad).is_err(), "{bad:?}");
        }
        for bad in [
            "Basic abc",
            "Bearer",
            "Bearer ",
            "Bearertoken",
            "Bearer a b",
        ] {
            assert_eq!(bearer(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let shown = format!("{:?}", Token::new("s3cret").unwrap());
        assert!(!shown.contains("s3cret"), "{shown}");
    }
}
