//! What kind of WebAssembly binary a file is, from its header.

/// The attribute an agent that runs components offers with (`components=wasi-0.2`):
/// frameworks placing a component constrain on it; an agent without it runs core modules only.
pub const COMPONENTS_ATTRIBUTE: (&str, &str) = ("components", "wasi-0.2");

/// A WebAssembly binary's kind, told by its first eight bytes: the magic `\0asm`, then a
/// version and a layer (0 for a core module, 1 for a component).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WasmBinary {
    /// A core module (WASI preview 1 tasks).
    Module,
    /// A component (WASI 0.2 `wasi:cli/command` tasks).
    Component,
}

impl WasmBinary {
    /// The kind of `bytes`, or `None` when they do not start like WebAssembly.
    #[must_use]
    pub fn detect(bytes: &[u8]) -> Option<Self> {
        match bytes.get(..8)? {
            [0, b'a', b's', b'm', _, _, 0, 0] => Some(Self::Module),
            [0, b'a', b's', b'm', _, _, 1, 0] => Some(Self::Component),
            _ => None,
        }
    }

    /// `module` or `component`, for messages.
    #[must_use]
    pub fn noun(self) -> &'static str {
        match self {
            Self::Module => "module",
            Self::Component => "component",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layer_tells_modules_from_components() {
        assert_eq!(
            WasmBinary::detect(b"\0asm\x01\0\0\0"),
            Some(WasmBinary::Module)
        );
        assert_eq!(
            WasmBinary::detect(b"\0asm\x0d\0\x01\0rest"),
            Some(WasmBinary::Component)
        );
        for bad in [
            &b""[..],
            b"\0asm",
            b"\x7fELF\x02\x01\x01\0",
            b"\0asm\x01\0\x02\0",
        ] {
            assert_eq!(WasmBinary::detect(bad), None, "{bad:?}");
        }
    }
}
