//! Tar archives of task inputs: whatever an archive holds, what is unpacked stays under the
//! input directory and within the bounds, and nothing panics.
#![no_main]

use corral_intake::archive::{Bounds, unpack};
use corral_intake::paths;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let bounds = Bounds {
        bytes: 4096,
        files: 16,
    };
    let Ok(files) = unpack("in", data, bounds) else {
        return;
    };
    assert!(files.len() <= bounds.files);
    let bytes: usize = files.iter().map(|f| f.data.len()).sum();
    assert!(bytes as u64 <= bounds.bytes);
    for file in &files {
        let relative = file.path.strip_prefix("in/").expect("under the input directory");
        assert!(paths::file(relative).is_some(), "{:?} leaves it", file.path);
    }
});
