//! A module or component named by a local file, read as `wasmtime run` reads one: a binary as
//! it is, the text format (`.wat`) compiled to its binary, anything else refused before it is
//! uploaded.

use std::path::Path;

use corral_types::WasmBinary;

use crate::commands::Exit;

/// The file `name`'s `bytes` as a WebAssembly binary, and which kind it is.
pub(crate) fn wasm_binary(name: &str, bytes: Vec<u8>) -> anyhow::Result<(Vec<u8>, WasmBinary)> {
    if let Some(kind) = WasmBinary::detect(&bytes) {
        return Ok((bytes, kind));
    }
    let not_wasm = || {
        Exit::invalid(format!(
            "{name} is not a WebAssembly module or component (no `\\0asm` header)"
        ))
    };
    if std::str::from_utf8(&bytes).is_err() {
        return Err(not_wasm().into());
    }
    let binary = wat::Parser::new()
        .parse_bytes(Some(Path::new(name)), &bytes)
        .map_err(|e| {
            Exit::invalid(format!(
                "{name} is neither a WebAssembly binary (no `\\0asm` header) nor the text \
                 format: {e}"
            ))
        })?
        .into_owned();
    let kind = WasmBinary::detect(&binary).ok_or_else(not_wasm)?;
    Ok((binary, kind))
}
