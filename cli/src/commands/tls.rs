//! `corral tls init`: a cluster CA, and certificates for masters and agents signed by it.

use std::path::Path;

use anyhow::Context as _;
use corral_proto::tls::{AGENT_CERT_NAME, MASTER_CERT_NAME};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};

use super::Exit;
use crate::cli::TlsInitArgs;

/// How long the CA is valid, in days.
const CA_DAYS: i64 = 3650;
/// How long a master's or agent's certificate is valid, in days (what browsers accept).
const LEAF_DAYS: i64 = 397;

/// The files written, and whether each is a private key.
const FILES: [(&str, bool); 6] = [
    ("ca.pem", false),
    ("ca-key.pem", true),
    ("master.pem", false),
    ("master-key.pem", true),
    ("agent.pem", false),
    ("agent-key.pem", true),
];

pub(super) fn init(args: &TlsInitArgs) -> anyhow::Result<u8> {
    let hosts = write_material(&args.dir, &args.hosts)?;
    eprintln!(
        "wrote {} (certificates for {})",
        FILES.map(|(f, _)| f).join(", "),
        hosts.join(", ")
    );
    eprintln!("keep ca-key.pem offline: whoever holds it can make certificates masters trust");
    Ok(0)
}

/// Writes a CA, and certificates for masters and agents valid for `extra_hosts` and this
/// host's loopback names, into `dir`; answers the hosts they are valid for.
pub(crate) fn write_material(dir: &Path, extra_hosts: &[String]) -> anyhow::Result<Vec<String>> {
    if let Some((taken, _)) = FILES.iter().find(|(f, _)| dir.join(f).exists()) {
        return Err(Exit::invalid(format!(
            "{} exists; `corral tls init` does not replace TLS material",
            dir.join(taken).display()
        ))
        .into());
    }
    // Localhost too: a master's own frameworks dial it on loopback.
    let mut hosts: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    for host in extra_hosts {
        if host.is_empty()
            || host.contains(['/', ' ', ':']) && host.parse::<std::net::IpAddr>().is_err()
        {
            return Err(
                Exit::invalid(format!("--host {host:?}: a host name or an IP address")).into(),
            );
        }
        if !hosts.contains(host) {
            hosts.push(host.clone());
        }
    }
    let now = jiff::Timestamp::now();
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.distinguished_name = name("Corral cluster CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    valid_for(&mut ca_params, now, CA_DAYS)?;
    let ca_key = KeyPair::generate()?;
    let ca_key_pem = ca_key.serialize_pem();
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key)?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    write(dir, "ca.pem", &ca.pem(), false)?;
    write(dir, "ca-key.pem", &ca_key_pem, true)?;
    for (role, common_name) in [("master", MASTER_CERT_NAME), ("agent", AGENT_CERT_NAME)] {
        let mut params = CertificateParams::new(hosts.clone())
            .map_err(|e| Exit::invalid(format!("--host: {e}")))?;
        params.distinguished_name = name(common_name);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        // Both: each serves its port, and presents itself to masters (mutual TLS).
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        valid_for(&mut params, now, LEAF_DAYS)?;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &ca)?;
        write(dir, &format!("{role}.pem"), &cert.pem(), false)?;
        write(dir, &format!("{role}-key.pem"), &key.serialize_pem(), true)?;
    }
    Ok(hosts)
}

fn name(common: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common);
    name
}

/// Valid from a day ago (clocks differ) for `days`.
fn valid_for(
    params: &mut CertificateParams,
    now: jiff::Timestamp,
    days: i64,
) -> anyhow::Result<()> {
    let ymd = |t: jiff::Timestamp| -> anyhow::Result<(i32, u8, u8)> {
        let date = t.to_zoned(jiff::tz::TimeZone::UTC).date();
        Ok((
            i32::from(date.year()),
            u8::try_from(date.month())?,
            u8::try_from(date.day())?,
        ))
    };
    let (y, m, d) = ymd(now - jiff::SignedDuration::from_hours(24))?;
    params.not_before = rcgen::date_time_ymd(y, m, d);
    let (y, m, d) = ymd(now + jiff::SignedDuration::from_hours(24 * days))?;
    params.not_after = rcgen::date_time_ymd(y, m, d);
    Ok(())
}

/// Writes a new file; keys readable by their owner only.
fn write(dir: &Path, name: &str, text: &str, secret: bool) -> anyhow::Result<()> {
    use std::io::Write as _;
    let path = dir.join(name);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, if secret { 0o600 } else { 0o644 });
    let mut file = options
        .open(&path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
