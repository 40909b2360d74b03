//! Tar archives of task inputs: whatever an archive holds, what is unpacked stays under the
//! input directory and within the bounds, and nothing panics.
#![no_main]

use corral_intake::archive::{Bounds, unpack};
use corral_intake::paths;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let bounds = Bounds {
        bytes: 4096,
        entries: 16,
    };
    let Ok(unpacked) = unpack("in", data, bounds) else {
        return;
    };
    assert!(unpacked.dirs.len() + unpacked.files.len() <= bounds.entries);
    let bytes: usize = unpacked.files.iter().map(|f| f.data.len()).sum();
    assert!(bytes as u64 <= bounds.bytes);
    let paths = unpacked.dirs.iter().chain(unpacked.files.iter().map(|f| &f.path));
    for path in paths {
        let relative = path.strip_prefix("in/").expect("under the input directory");
        assert!(paths::file(relative).is_some(), "{path:?} leaves it");
    }
});
