//! The arguments of TLS, tokens and signing in.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::MasterAddr;

/// A server's TLS (`corral master`, `corral agent`).
#[derive(Debug, Args, Clone)]
pub(crate) struct ServeTls {
    /// This process's certificate (PEM, signed by the cluster's CA given with --ca-cert):
    /// served to clients, and presented to masters. Needs --tls-key and --ca-cert.
    #[arg(long, value_name = "FILE", requires_all = ["tls_key", "ca_cert"])]
    pub(crate) tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub(crate) tls_key: Option<PathBuf>,
    /// Serve plaintext on an address other hosts can reach (refused without it: bearer
    /// tokens and tasks' data would cross the network in the clear).
    #[arg(long)]
    pub(crate) insecure: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum TlsCommand {
    /// Make a cluster CA and a certificate (with key) for masters and one for agents, valid
    /// for the hosts named (and localhost, which a master's own frameworks dial).
    #[command(
        after_help = "Examples:\n  corral tls init ./tls --host master.example.com --host 10.0.0.1\n  corral master --listen 10.0.0.1:5050 --ca-cert tls/ca.pem --tls-cert tls/master.pem --tls-key tls/master-key.pem\n  corral agent --master 10.0.0.1:5050 --ca-cert tls/ca.pem --tls-cert tls/agent.pem --tls-key tls/agent-key.pem\n  CORRAL_CA_CERT=tls/ca.pem corral ps --master 10.0.0.1:5050"
    )]
    Init(TlsInitArgs),
}

#[derive(Debug, Args)]
pub(crate) struct TlsInitArgs {
    /// Where to write ca.pem, ca-key.pem, master.pem, master-key.pem, agent.pem and
    /// agent-key.pem (keys readable by their owner only); existing files are not replaced.
    pub(crate) dir: PathBuf,
    /// A host name or IP address the certificates are valid for (repeatable).
    #[arg(long = "host")]
    pub(crate) hosts: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct LoginArgs {
    #[command(flatten)]
    pub(crate) master: MasterAddr,
}

#[derive(Debug, Subcommand)]
pub(crate) enum TokenCommand {
    /// Make a new random token for a principal: prints its credentials-file entry (which
    /// holds the token's SHA-256, not the token) and writes the token where --out says, or
    /// shows it once on stderr.
    #[command(
        after_help = "Examples:\n  corral token new alice --out alice.token >> credentials.toml\n  kill -HUP $(pidof corral)    # the master reads credentials.toml again"
    )]
    New(TokenNewArgs),
}

#[derive(Debug, Args)]
pub(crate) struct TokenNewArgs {
    /// The principal: letters, digits, '.', '_', '-' or '@'.
    pub(crate) principal: String,
    /// When the token stops working (RFC 3339, e.g. 2027-01-01T00:00:00Z).
    #[arg(long)]
    pub(crate) expires: Option<String>,
    /// Write the token to this new file (readable by its owner only).
    #[arg(long, value_name = "FILE")]
    pub(crate) out: Option<PathBuf>,
}
