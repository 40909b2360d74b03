//! `sdk_demo <command> [args...]`: a task built with the `corral-task` SDK.
//!
//! - `steps <n> <ms>`: n steps of `ms` milliseconds each, reporting progress after each
//!   (`step i of n`), then the result `{"steps": n}`; prints `done <n>`.
//! - `result <json>`: sets `json` as the result and exits.
//! - `big-result`: tries a result one byte over the limit; prints the SDK's error, exits 1.
//! - `big-message`: tries a progress message one byte over the limit; likewise.

use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let outcome = match args.as_slice() {
        ["steps", n, ms] => match (n.parse::<u32>(), ms.parse::<u64>()) {
            (Ok(n), Ok(ms)) => steps(n, ms),
            _ => return usage(),
        },
        ["result", json] => corral_task::set_result(json),
        ["big-result"] => corral_task::set_result(&"1".repeat(corral_task::MAX_RESULT_BYTES + 1)),
        ["big-message"] => {
            corral_task::progress(0.5, &"m".repeat(corral_task::MAX_PROGRESS_MESSAGE_BYTES + 1))
        }
        _ => return usage(),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{error}");
            ExitCode::FAILURE
        }
    }
}

fn steps(n: u32, ms: u64) -> Result<(), corral_task::Error> {
    for i in 1..=n {
        std::thread::sleep(Duration::from_millis(ms));
        corral_task::progress(i as f32 / n as f32, &format!("step {i} of {n}"))?;
    }
    corral_task::set_result(&format!("{{\"steps\": {n}}}"))?;
    println!("done {n}");
    Ok(())
}

fn usage() -> ExitCode {
    eprintln!("usage: sdk_demo steps <n> <ms> | result <json> | big-result | big-message");
    ExitCode::from(2)
}
