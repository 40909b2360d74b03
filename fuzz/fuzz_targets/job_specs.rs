//! Job specs in each format; the first byte picks TOML, YAML or JSON.
#![no_main]

use corral_frameworks::spec::{Format, parse};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&format, text)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let format = match format % 3 {
        0 => Format::Toml,
        1 => Format::Yaml,
        _ => Format::Json,
    };
    let _ = parse(text, format, "fuzz");
});
