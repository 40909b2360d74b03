//! `mandelbrot [width] [height] [output]`: renders the Mandelbrot set (at most 255 iterations
//! per pixel) as a binary PGM (P5) image, default 256x192 into `mandelbrot.pgm`, and prints
//! `wrote <path> (<w>x<h>)`. Bad arguments: exit 2; write failure: exit 1.

use std::process::ExitCode;

const MAX_ITER: u32 = 255;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let width = match dimension(args.first(), 256, "width") {
        Ok(w) => w,
        Err(code) => return code,
    };
    let height = match dimension(args.get(1), 192, "height") {
        Ok(h) => h,
        Err(code) => return code,
    };
    let path = args.get(2).map_or("mandelbrot.pgm", String::as_str);

    let mut image = format!("P5\n{width} {height}\n255\n").into_bytes();
    image.reserve(width * height);
    for row in 0..height {
        let ci = -1.2 + 2.4 * (row as f64 + 0.5) / height as f64;
        for col in 0..width {
            let cr = -2.3 + 3.2 * (col as f64 + 0.5) / width as f64;
            image.push(shade(escape_time(cr, ci)));
        }
    }

    if let Err(err) = std::fs::write(path, &image) {
        eprintln!("mandelbrot: cannot write {path}: {err}");
        return ExitCode::from(1);
    }
    println!("wrote {path} ({width}x{height})");
    ExitCode::SUCCESS
}

fn dimension(arg: Option<&String>, default: usize, what: &str) -> Result<usize, ExitCode> {
    let Some(arg) = arg else {
        return Ok(default);
    };
    match arg.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => {
            eprintln!("mandelbrot: invalid {what} {arg:?}: expected a positive integer");
            Err(ExitCode::from(2))
        }
    }
}

fn escape_time(cr: f64, ci: f64) -> u32 {
    let (mut zr, mut zi) = (0.0f64, 0.0f64);
    for i in 0..MAX_ITER {
        let (zr2, zi2) = (zr * zr, zi * zi);
        if zr2 + zi2 > 4.0 {
            return i;
        }
        zi = 2.0 * zr * zi + ci;
        zr = zr2 - zi2 + cr;
    }
    MAX_ITER
}

/// Points in the set are black; outside, brighter means slower to escape (square-root scale,
/// so the many fast-escaping points are not all near black).
fn shade(iterations: u32) -> u8 {
    if iterations >= MAX_ITER {
        return 0;
    }
    let brightness = (f64::from(iterations) / f64::from(MAX_ITER)).sqrt() * 255.0;
    brightness as u8
}
