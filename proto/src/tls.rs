//! TLS between Corral's processes (rustls, through tonic), and the [`Dialer`] every client
//! connects with: the scheme, the CA it trusts, the certificate it presents (agents and
//! masters, for mutual TLS) and its bearer token, in one value.
//!
//! One cluster CA signs every master's and agent's certificate (`corral tls init` makes
//! them). A master serves TLS with its certificate and verifies the client certificates
//! agents and other masters present; an agent serves its file API with its certificate to
//! masters only; the CLI, frameworks and the SDK trust the CA.

use std::path::{Path, PathBuf};

use tonic::transport::{
    Certificate, Channel, ClientTlsConfig, Endpoint, Identity, ServerTlsConfig,
};

use crate::auth::{Conn, Token};
use crate::limits;

/// The subject common name of the masters' certificates `corral tls init` makes. Every master
/// and agent holds a certificate the cluster's CA signed; agents tell masters by this name
/// (or others their operators give) and serve their files to masters only.
pub const MASTER_CERT_NAME: &str = "corral master";
/// The subject common name of the agents' certificates `corral tls init` makes.
pub const AGENT_CERT_NAME: &str = "corral agent";

/// Largest PEM file read (a certificate chain or a key).
const MAX_PEM_BYTES: u64 = 1 << 20;

/// Why TLS material cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file cannot be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file is not what it should be.
    #[error("{path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// An address that asks for TLS without a CA to verify it with.
    #[error("{0} asks for TLS: give the cluster's CA certificate (--ca-cert or CORRAL_CA_CERT)")]
    NoCa(String),
    /// tonic refused the configuration or the address.
    #[error(transparent)]
    Transport(#[from] tonic::transport::Error),
}

/// A process's TLS material: the CA it trusts, and its own certificate and key (masters and
/// agents; clients need only the CA).
#[derive(Clone)]
pub struct Tls {
    ca: Certificate,
    identity: Option<Identity>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("identity", &self.identity.is_some())
            .finish_non_exhaustive()
    }
}

fn read_pem(path: &Path, what: &str) -> Result<Vec<u8>, TlsError> {
    use std::io::Read as _;
    let file = std::fs::File::open(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })?;
    let mut bytes = Vec::new();
    file.take(MAX_PEM_BYTES)
        .read_to_end(&mut bytes)
        .map_err(|source| TlsError::Read {
            path: path.to_owned(),
            source,
        })?;
    // Parsed for real by rustls when the configuration is built; this catches the file
    // given in the wrong place (a key for a certificate) with a clear message.
    let text = String::from_utf8_lossy(&bytes);
    // Keys come as PKCS#8 ("PRIVATE KEY") or with their algorithm ("EC PRIVATE KEY").
    let holds = text.contains(&format!("-----BEGIN {what}"))
        || (what == "PRIVATE KEY" && text.contains(" PRIVATE KEY-----"));
    if !holds {
        return Err(TlsError::Invalid {
            path: path.to_owned(),
            reason: format!("not a PEM file holding a {}", what.to_ascii_lowercase()),
        });
    }
    Ok(bytes)
}

impl Tls {
    /// Trusts the CA certificate in `ca` (PEM).
    pub fn trusting(ca: &Path) -> Result<Self, TlsError> {
        Ok(Self {
            ca: Certificate::from_pem(read_pem(ca, "CERTIFICATE")?),
            identity: None,
        })
    }

    /// Also presents the certificate chain in `cert` with the key in `key` (PEM).
    pub fn with_identity(mut self, cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let cert = read_pem(cert, "CERTIFICATE")?;
        let key = read_pem(key, "PRIVATE KEY")?;
        self.identity = Some(Identity::from_pem(cert, key));
        Ok(self)
    }

    /// The server side: this process's certificate; clients presenting a certificate are
    /// verified against the CA, and must present one when `require_client_cert`.
    pub fn server_config(&self, require_client_cert: bool) -> Result<ServerTlsConfig, TlsError> {
        let identity = self.identity.clone().ok_or_else(|| TlsError::Invalid {
            path: PathBuf::new(),
            reason: "serving TLS needs a certificate and its key (--tls-cert, --tls-key)".into(),
        })?;
        Ok(ServerTlsConfig::new()
            .identity(identity)
            .client_ca_root(self.ca.clone())
            .client_auth_optional(!require_client_cert))
    }

    /// The client side: trust the CA, and present this process's certificate if it has one.
    pub fn client_config(&self) -> ClientTlsConfig {
        let config = ClientTlsConfig::new().ca_certificate(self.ca.clone());
        match &self.identity {
            Some(identity) => config.identity(identity.clone()),
            None => config,
        }
    }
}

/// How a process reaches Corral's services: plaintext or TLS, and the token it presents.
/// Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Dialer {
    tls: Option<Tls>,
    token: Token,
}

impl Dialer {
    /// Plaintext, presenting `token`.
    pub fn plaintext(token: Token) -> Self {
        Self { tls: None, token }
    }

    /// TLS with `tls` (when given), presenting `token`.
    pub fn new(tls: Option<Tls>, token: Token) -> Self {
        Self { tls, token }
    }

    /// The token presented.
    pub fn token(&self) -> &Token {
        &self.token
    }

    /// The TLS material, when connections use TLS.
    pub fn tls(&self) -> Option<&Tls> {
        self.tls.as_ref()
    }

    /// Whether connections use TLS.
    pub fn uses_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The endpoint for `address` (`host:port`, or with an `http://` or `https://` scheme),
    /// with Corral's connection settings ([`limits::endpoint`]): TLS when this dialer has a
    /// CA, whatever scheme the address names.
    pub fn endpoint(&self, address: &str) -> Result<Endpoint, TlsError> {
        let authority = address
            .strip_prefix("https://")
            .or_else(|| address.strip_prefix("http://"))
            .unwrap_or(address);
        match &self.tls {
            Some(tls) => Ok(limits::endpoint(format!("https://{authority}"))?
                .tls_config(tls.client_config())?),
            None if address.starts_with("https://") => Err(TlsError::NoCa(address.to_owned())),
            None => Ok(limits::endpoint(format!("http://{authority}"))?),
        }
    }

    /// `channel`, presenting this dialer's token.
    pub fn wrap(&self, channel: Channel) -> Conn {
        self.token.on(channel)
    }

    /// Connects to `address`.
    pub async fn connect(&self, address: &str) -> Result<Conn, TlsError> {
        Ok(self.wrap(self.endpoint(address)?.connect().await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dialer_picks_the_scheme_and_refuses_https_without_a_ca() {
        let plain = Dialer::default();
        for address in ["127.0.0.1:5050", "http://127.0.0.1:5050"] {
            let endpoint = plain.endpoint(address).unwrap();
            assert_eq!(endpoint.uri().to_string(), "http://127.0.0.1:5050/");
        }
        let refused = plain.endpoint("https://m:1").unwrap_err();
        assert!(refused.to_string().contains("--ca-cert"), "{refused}");
        assert!(!plain.uses_tls());
    }

    #[test]
    fn files_in_the_wrong_place_are_refused_by_name() {
        let dir = std::env::temp_dir().join(format!("corral-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = dir.join("key.pem");
        std::fs::write(
            &key,
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let err = Tls::trusting(&key).unwrap_err().to_string();
        assert!(
            err.contains("key.pem") && err.contains("certificate"),
            "{err}"
        );
        let err = Tls::trusting(&dir.join("missing.pem"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing.pem"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
