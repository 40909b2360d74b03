//! The host side of the task SDK (`corral-task`): which modules use it, and what they say.
//!
//! The SDK speaks only WASI, so a task built with it runs anywhere. A module built with it
//! carries a `corral-task` custom section; such a task gets a control directory, preopened
//! as [`CONTROL_GUEST_PATH`] and named in its environment as `CORRAL_CONTROL`, into which
//! the SDK writes (each file whole, through a rename):
//!
//! ```text
//! <sandbox root>/.corral/
//!     progress             "<fraction>\n<message>"   read while the task runs
//!     checkpoint           bytes                     read while it runs and when it ends
//!     result.json          a JSON value              read when it ends
//!     previous-checkpoint  bytes                     written by the agent before it starts
//! ```
//!
//! It also finds its outputs folder ([`corral_types::OUTPUTS_GUEST_PATH`]) in
//! `CORRAL_OUTPUTS`: under its root, or preopened on its own when the task names its
//! preopens.
//!
//! Everything else in Corral reads these through [`read_progress`] and [`read_result`],
//! which bound what they read.

use std::path::Path;

use corral_types::Progress;

/// The name of the custom section that marks a module as built with the SDK.
const MARKER_SECTION: &str = "corral-task";
/// The control directory's name in the sandbox root.
pub(crate) const CONTROL_DIR: &str = ".corral";
/// The name the guest sees the control directory under.
pub(crate) const CONTROL_GUEST_PATH: &str = "/.corral";
/// The environment variable the SDK finds it by.
pub(crate) const CONTROL_ENV: &str = "CORRAL_CONTROL";
/// The environment variable that names the outputs folder to the SDK.
pub(crate) const OUTPUTS_ENV: &str = "CORRAL_OUTPUTS";
/// The file the previous attempt's checkpoint is handed in.
pub(crate) const PREVIOUS_CHECKPOINT: &str = "previous-checkpoint";
/// Largest checkpoint, as the SDK limits it.
pub(crate) const MAX_CHECKPOINT_BYTES: usize = corral_proto::limits::MAX_CHECKPOINT_BYTES;
/// Largest result, as the SDK limits it.
pub(crate) const MAX_RESULT_BYTES: usize = corral_proto::limits::MAX_RESULT_BYTES;

/// Whether `wasm` (a module, or a component embedding core modules) was built with the SDK.
pub(crate) fn uses_sdk(wasm: &[u8]) -> bool {
    has_marker(wasm, 0)
}

/// Walks the sections of one binary (and of the core modules a component embeds); a
/// malformed binary simply has no marker (compilation reports what is wrong with it).
fn has_marker(wasm: &[u8], depth: u8) -> bool {
    let Some(mut rest) = wasm.get(8..).filter(|_| wasm.starts_with(b"\0asm")) else {
        return false;
    };
    let is_component = wasm.get(6) == Some(&1);
    while let Some((&id, after_id)) = rest.split_first() {
        let Some((size, after_size)) = leb128(after_id) else {
            return false;
        };
        let Some(payload) = after_size.get(..size) else {
            return false;
        };
        match id {
            0 => {
                if let Some((len, name)) = leb128(payload)
                    && name.get(..len) == Some(MARKER_SECTION.as_bytes())
                {
                    return true;
                }
            }
            // A component's core module section holds a whole module.
            1 if is_component && depth < 4 && has_marker(payload, depth + 1) => return true,
            _ => {}
        }
        rest = &after_size[size..];
    }
    false
}

/// An unsigned LEB128 `u32` and what follows it.
fn leb128(bytes: &[u8]) -> Option<(usize, &[u8])> {
    let mut value: u32 = 0;
    for (i, &byte) in bytes.iter().enumerate().take(5) {
        value |= u32::from(byte & 0x7f).checked_shl(7 * i as u32)?;
        if byte & 0x80 == 0 {
            return Some((value as usize, &bytes[i + 1..]));
        }
    }
    None
}

/// The task's latest progress in its control directory `control`
/// ([`crate::SandboxPaths::control`]), if it has reported any readable one.
pub async fn read_progress(control: &Path) -> Option<Progress> {
    let text = read_bounded(&control.join("progress"), 64 + Progress::MAX_MESSAGE_BYTES).await?;
    let (fraction, message) = text.split_once('\n').unwrap_or((&text, ""));
    let fraction: f32 = fraction.trim().parse().ok()?;
    Some(Progress::new(fraction, message))
}

/// The task's latest checkpoint, if it kept one within the limit.
pub async fn read_checkpoint(control: &Path) -> Option<bytes::Bytes> {
    let path = control.join("checkpoint");
    if tokio::fs::metadata(&path).await.ok()?.len() > MAX_CHECKPOINT_BYTES as u64 {
        return None;
    }
    tokio::fs::read(path).await.ok().map(Into::into)
}

/// The task's result, if it set one: `Ok(json)`, or why it is not handed on.
pub async fn read_result(control: &Path) -> Option<Result<String, String>> {
    let path = control.join("result.json");
    let size = tokio::fs::metadata(&path).await.ok()?.len();
    if size > MAX_RESULT_BYTES as u64 {
        return Some(Err(format!(
            "the result is {size} bytes, over the limit of {MAX_RESULT_BYTES} bytes"
        )));
    }
    let text = read_bounded(&path, MAX_RESULT_BYTES).await?;
    Some(match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(_) => Ok(text),
        Err(e) => Err(format!("the result is not JSON: {e}")),
    })
}

/// A control file's text, if it exists, is UTF-8 and within `limit` bytes.
async fn read_bounded(path: &Path, limit: usize) -> Option<String> {
    let bytes = tokio::fs::read(path).await.ok()?;
    if bytes.len() > limit {
        return None;
    }
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_marker_is_found_in_modules_and_components_only_when_there() {
        let marked = wat::parse_str(r#"(module (@custom "corral-task" "\01"))"#).unwrap();
        let plain = wat::parse_str(r#"(module (@custom "other" "\01"))"#).unwrap();
        assert!(uses_sdk(&marked));
        assert!(!uses_sdk(&plain));
        let component =
            wat::parse_str(r#"(component (core module (@custom "corral-task" "\01")))"#).unwrap();
        assert!(uses_sdk(&component));
        for broken in [&b""[..], b"\0asm\x01\0\0\0\0\xff\xff\xff\xff\xff", b"junk"] {
            assert!(!uses_sdk(broken));
        }
    }

    #[tokio::test]
    async fn progress_and_results_are_read_within_bounds() {
        let dir = tempfile::tempdir().unwrap();
        let control = dir.path();
        assert_eq!(read_progress(control).await, None);
        std::fs::write(control.join("progress"), "0.25\nhalf of half").unwrap();
        assert_eq!(
            read_progress(control).await,
            Some(Progress::new(0.25, "half of half"))
        );
        std::fs::write(control.join("progress"), "lots\nx").unwrap();
        assert_eq!(read_progress(control).await, None);

        assert_eq!(read_result(control).await, None);
        std::fs::write(control.join("result.json"), r#"{"n": 1}"#).unwrap();
        assert_eq!(read_result(control).await, Some(Ok(r#"{"n": 1}"#.into())));
        std::fs::write(control.join("result.json"), "{oops").unwrap();
        assert!(matches!(read_result(control).await, Some(Err(e)) if e.contains("not JSON")));
        std::fs::write(
            control.join("result.json"),
            vec![b'1'; MAX_RESULT_BYTES + 1],
        )
        .unwrap();
        assert!(matches!(read_result(control).await, Some(Err(e)) if e.contains("over the limit")));
    }
}
