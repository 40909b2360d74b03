//! The token a command presents, and the commands that handle tokens: `corral login`,
//! `corral logout` and `corral token new`.

use std::io::{IsTerminal as _, Read as _, Write as _};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use corral_proto::auth::{TOKEN_ENV, Token};

use super::Exit;
use crate::cli::{LoginArgs, TokenNewArgs};
use crate::client;

/// The token of this run: `--token-file`, else `CORRAL_TOKEN`, else the one `corral login`
/// kept, else none.
pub(super) fn resolve(token_file: Option<&Path>) -> anyhow::Result<Token> {
    if let Some(path) = token_file {
        return read_token_file(path);
    }
    if let Ok(secret) = std::env::var(TOKEN_ENV)
        && !secret.trim().is_empty()
    {
        return Token::new(&secret).map_err(|e| Exit::invalid(format!("{TOKEN_ENV}: {e}")).into());
    }
    match stored_path() {
        Some(path) if path.exists() => read_token_file(&path),
        _ => Ok(Token::none()),
    }
}

fn read_token_file(path: &Path) -> anyhow::Result<Token> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Exit::invalid(format!("reading the token file {}: {e}", path.display())))?;
    Token::new(&text)
        .map_err(|e| Exit::invalid(format!("the token file {}: {e}", path.display())).into())
}

/// Where `corral login` keeps the token: `$XDG_CONFIG_HOME/corral/token`, else
/// `~/.config/corral/token`.
fn stored_path() -> Option<PathBuf> {
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(config.join("corral").join("token"))
}

/// `corral login`: the token from `--token-file`, `CORRAL_TOKEN` or stdin, checked against
/// the master, then kept.
pub(super) async fn login(args: LoginArgs, token_file: Option<&Path>) -> anyhow::Result<u8> {
    let given =
        token_file.is_some() || std::env::var(TOKEN_ENV).is_ok_and(|t| !t.trim().is_empty());
    let token = if given {
        resolve(token_file)?
    } else {
        let stdin = std::io::stdin();
        if stdin.is_terminal() {
            return Err(Exit::invalid(
                "pipe the token in (`corral login < alice.token`) or name it with --token-file: \
                 typed on a terminal, it would show",
            )
            .into());
        }
        let mut text = String::new();
        stdin
            .lock()
            .take(4096)
            .read_to_string(&mut text)
            .context("reading the token from stdin")?;
        Token::new(&text).map_err(|e| Exit::invalid(format!("the token on stdin: {e}")))?
    };
    // The dialer of this run has no token yet: login's own is checked.
    let dialer = corral_proto::tls::Dialer::new(client::dialer().tls().cloned(), token.clone());
    // Finding the leader makes an authenticated call: a token the master refuses fails here.
    client::operator_as(&dialer, &args.master.master).await?;
    let path = stored_path().ok_or_else(|| {
        Exit::invalid("neither XDG_CONFIG_HOME nor HOME is set: nowhere to keep the token")
    })?;
    let secret = token
        .header()
        .and_then(|h| h.strip_prefix("Bearer "))
        .ok_or_else(|| Exit::invalid("no token given"))?;
    write_private(&path, secret, true)?;
    eprintln!(
        "logged in to {}; token kept in {}",
        args.master.master.join(","),
        path.display()
    );
    Ok(0)
}

/// `corral logout`.
pub(super) fn logout() -> anyhow::Result<u8> {
    match stored_path() {
        Some(path) if path.exists() => {
            std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
            eprintln!("removed {}", path.display());
        }
        _ => eprintln!("no token was kept"),
    }
    Ok(0)
}

/// `corral token new`.
pub(super) fn token_new(args: &TokenNewArgs) -> anyhow::Result<u8> {
    corral_master::auth::check_principal(&args.principal)
        .map_err(|e| Exit::invalid(format!("principal {:?}: {e}", args.principal)))?;
    if let Some(expires) = &args.expires {
        expires.parse::<jiff::Timestamp>().map_err(|e| {
            Exit::invalid(format!(
                "--expires {expires:?}: {e} (e.g. 2027-01-01T00:00:00Z)"
            ))
        })?;
    }
    let token = corral_master::auth::new_token();
    let mut entry = format!(
        "[[principal]]\nname = \"{}\"\ntoken_sha256 = \"{}\"\n",
        args.principal,
        corral_master::auth::token_sha256(&token)
    );
    if let Some(expires) = &args.expires {
        entry.push_str(&format!("expires = \"{expires}\"\n"));
    }
    match &args.out {
        Some(path) => {
            write_private(path, &token, false)?;
            eprintln!("token for {} written to {}", args.principal, path.display());
        }
        None => eprintln!(
            "token for {} (shown once, kept nowhere): {token}",
            args.principal
        ),
    }
    print!("{entry}");
    std::io::stdout().flush()?;
    Ok(0)
}

/// Writes `secret` to `path`, readable by its owner only; `replace` an existing file (else
/// refuse to).
fn write_private(path: &Path, secret: &str, replace: bool) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let target = if replace {
        // Written whole beside it, then renamed over it.
        options.create(true).truncate(true);
        path.with_extension("new")
    } else {
        options.create_new(true);
        path.to_owned()
    };
    let mut file = options
        .open(&target)
        .map_err(|e| Exit::invalid(format!("writing {}: {e}", target.display())))?;
    file.write_all(format!("{secret}\n").as_bytes())?;
    file.sync_all()?;
    if replace {
        std::fs::rename(&target, path).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
