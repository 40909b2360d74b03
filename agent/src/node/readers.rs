//! Who may read an agent's files. Over TLS every client of the agent's port presents a
//! certificate the cluster's CA signed, masters and agents alike, so the CA alone cannot tell
//! them apart, and another agent must not read tasks' files. Masters are told by their
//! certificate's subject common name: [`MASTER_CERT_NAME`] in what `corral tls init` makes,
//! or the names an operator's own PKI gives them (`corral agent --master-cert-name`).
//!
//! Plaintext carries no certificates: the agent then serves whoever reaches it, which is why
//! it serves plaintext only on loopback unless told otherwise.
//!
//! [`MASTER_CERT_NAME`]: corral_proto::tls::MASTER_CERT_NAME

use std::sync::Arc;

use tonic::{Request, Status};

/// Who may call the agent's files API.
#[derive(Debug, Clone)]
pub(crate) enum Readers {
    /// Plaintext: there is no certificate to tell a master by.
    Anyone,
    /// TLS: clients whose certificate's subject common name is one of these.
    Masters(Arc<[String]>),
}

impl Readers {
    /// Refuses `request` unless its client may read files.
    pub(crate) fn admit<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let certs = request.peer_certs();
        self.admits(certs.as_deref().and_then(|c| c.first()).map(|c| c.as_ref()))
    }

    /// Whether a client presenting the certificate `leaf` (DER; `None`: no certificate) may
    /// read files.
    fn admits(&self, leaf: Option<&[u8]>) -> Result<(), Status> {
        let Self::Masters(masters) = self else {
            return Ok(());
        };
        let wanted = || {
            let names: Vec<String> = masters.iter().map(|n| format!("{n:?}")).collect();
            names.join(" or ")
        };
        let Some(leaf) = leaf else {
            return Err(Status::unauthenticated(format!(
                "an agent serves its files to masters only: present a master's certificate \
                 (subject CN {})",
                wanted()
            )));
        };
        let presented = common_names(leaf);
        if presented.iter().any(|cn| masters.contains(cn)) {
            return Ok(());
        }
        tracing::warn!(
            presented = ?presented,
            "refused to serve files to a client whose certificate names no master"
        );
        let named = match presented.as_slice() {
            [] => "no common name".to_owned(),
            names => format!("CN {}", names.join(", ")),
        };
        Err(Status::permission_denied(format!(
            "an agent serves its files to masters only: the certificate presented names \
             {named}, not {} (corral agent --master-cert-name)",
            wanted()
        )))
    }
}

/// The subject common names of a certificate (DER) rustls has already verified; none when it
/// cannot be read.
fn common_names(der: &[u8]) -> Vec<String> {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return Vec::new();
    };
    cert.subject()
        .iter_common_name()
        .filter_map(|name| name.as_str().ok())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_proto::tls::{AGENT_CERT_NAME, MASTER_CERT_NAME};
    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};

    /// A self-signed certificate (DER) whose subject is `common_name`, if any.
    fn certificate(common_name: Option<&str>) -> Vec<u8> {
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        let mut subject = DistinguishedName::new();
        if let Some(name) = common_name {
            subject.push(DnType::CommonName, name);
        }
        subject.push(DnType::OrganizationName, "corral");
        params.distinguished_name = subject;
        let key = KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    fn masters(names: &[&str]) -> Readers {
        Readers::Masters(names.iter().map(|n| (*n).to_owned()).collect())
    }

    #[test]
    fn over_tls_only_a_certificate_naming_a_master_reads_files() {
        let readers = masters(&[MASTER_CERT_NAME]);
        assert!(
            readers
                .admits(Some(&certificate(Some(MASTER_CERT_NAME))))
                .is_ok()
        );

        let agent = readers
            .admits(Some(&certificate(Some(AGENT_CERT_NAME))))
            .unwrap_err();
        assert_eq!(agent.code(), tonic::Code::PermissionDenied);
        assert!(
            agent.message().contains("CN corral agent")
                && agent.message().contains("\"corral master\"")
                && agent.message().contains("--master-cert-name"),
            "{}",
            agent.message()
        );

        let nameless = readers.admits(Some(&certificate(None))).unwrap_err();
        assert!(nameless.message().contains("no common name"), "{nameless}");
        let garbage = readers.admits(Some(b"not a certificate")).unwrap_err();
        assert_eq!(garbage.code(), tonic::Code::PermissionDenied);
        let none = readers.admits(None).unwrap_err();
        assert_eq!(none.code(), tonic::Code::Unauthenticated);
    }

    #[test]
    fn an_operators_own_names_replace_the_default() {
        let readers = masters(&["master-1.example.com", "master-2.example.com"]);
        assert!(
            readers
                .admits(Some(&certificate(Some("master-2.example.com"))))
                .is_ok()
        );
        let default = readers
            .admits(Some(&certificate(Some(MASTER_CERT_NAME))))
            .unwrap_err();
        assert!(
            default
                .message()
                .contains("\"master-1.example.com\" or \"master-2.example.com\""),
            "{default}"
        );
    }

    #[test]
    fn plaintext_serves_anyone() {
        assert!(Readers::Anyone.admits(None).is_ok());
    }
}
