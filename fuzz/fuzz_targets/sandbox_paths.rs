//! Paths named inside a sandbox (inputs, preopens, file reads): any path the checks accept,
//! joined to a sandbox, stays lexically under it.
#![no_main]

use std::path::{Component, Path};

use corral_intake::paths;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    let root = Path::new("/sandbox/root");
    if let Some(names) = paths::inside(path) {
        let joined = root.join(path);
        assert!(joined.starts_with(root), "{path:?}");
        assert!(
            joined
                .components()
                .all(|c| !matches!(c, Component::ParentDir)),
            "{path:?}"
        );
        assert!(names.iter().all(|n| !n.is_empty() && *n != ".." && *n != "."));
        assert_eq!(paths::file(path).is_some(), !names.is_empty());
        assert!(paths::directory(path).is_some());
    } else {
        assert!(paths::file(path).is_none() && paths::directory(path).is_none());
    }
    if paths::is_plain_component(path) {
        assert_eq!(Path::new(path).components().count(), 1);
        assert_eq!(paths::inside(path).map(|n| n.len()), Some(1));
    }
});
