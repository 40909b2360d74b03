use corral_agent::TaskOutcome;

use crate::util::{run, spec};

#[tokio::test]
async fn mandelbrot_writes_a_pgm_image_into_its_sandbox() {
    let done = run(spec(
        corral_wasm_tasks::MANDELBROT,
        &["64", "48", "set.pgm"],
    ))
    .await;
    assert_eq!(done.result.outcome, TaskOutcome::Exited { code: 0 });
    let image = std::fs::read(done.root.join("set.pgm")).unwrap();
    let header = b"P5\n64 48\n255\n";
    assert!(image.starts_with(header), "{:?}", &image[..16]);
    assert_eq!(image.len(), header.len() + 64 * 48);
    // Points inside the set are black; points near its edge escape late and shine.
    let pixels = &image[header.len()..];
    assert!(pixels.contains(&0));
    assert!(pixels.iter().any(|&p| p > 128));
}
