//! `sdk_demo <command> [args...]`: a task built with the `corral-task` SDK.
//!
//! - `steps <n> <ms>`: n steps of `ms` milliseconds each, reporting progress after each
//!   (`step i of n`), then the result `{"steps": n}`; prints `done <n>`.
//! - `count <n> <ms>`: counts to n, `ms` milliseconds a step, checkpointing after each step
//!   and reporting progress; an attempt after an interrupted one prints `resumed at <k>` and
//!   goes on from its checkpoint. The result, `{"count": n, "sum": <1 + 2 + ... + n>}`, is
//!   the same either way; prints `counted to <n>`.
//! - `calls <n> <progress|checkpoint|none>`: makes n SDK calls of that kind (a 64-byte
//!   checkpoint), or n iterations of the same loop without one, for measuring their cost.
//! - `outputs <n> <bytes>`: writes n outputs `data/part-<i>.bin` of `bytes` bytes each (every
//!   byte `i`), then `summary.txt` (`<n> parts of <bytes> bytes`); the result is
//!   `{"parts": n}`. A write past the task's disk ends it there.
//! - `reverse <input> <output>`: writes the bytes of input file `input`, reversed, as output
//!   `output`; prints `reversed <len> bytes`.
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
        ["count", n, ms] => match (n.parse::<u64>(), ms.parse::<u64>()) {
            (Ok(n), Ok(ms)) => count(n, ms),
            _ => return usage(),
        },
        ["calls", n, kind] => match n.parse::<u32>() {
            Ok(n) => calls(n, kind),
            _ => return usage(),
        },
        ["outputs", ..] => outputs(),
        ["reverse", ..] => reverse(),
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

fn outputs() -> Result<(), corral_task::Error> {
    let n: u8 = corral_task::arg(2)?;
    let bytes: usize = corral_task::arg(3)?;
    for i in 0..n {
        corral_task::write_output(&format!("data/part-{i}.bin"), &vec![i; bytes])?;
    }
    corral_task::write_output("summary.txt", format!("{n} parts of {bytes} bytes\n").as_bytes())?;
    corral_task::set_result(&format!("{{\"parts\": {n}}}"))
}

fn reverse() -> Result<(), corral_task::Error> {
    let input: String = corral_task::arg(2)?;
    let output: String = corral_task::arg(3)?;
    let mut bytes = corral_task::input(&input)?;
    bytes.reverse();
    corral_task::write_output(&output, &bytes)?;
    println!("reversed {} bytes", bytes.len());
    Ok(())
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

fn count(n: u64, ms: u64) -> Result<(), corral_task::Error> {
    // The checkpoint: the last step done and the sum so far, little-endian.
    let (mut done, mut sum) = match corral_task::previous_checkpoint() {
        Some(bytes) if bytes.len() == 16 => {
            let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap_or_default());
            (word(0), word(8))
        }
        _ => (0, 0),
    };
    if done > 0 {
        println!("resumed at {done}");
    }
    while done < n {
        std::thread::sleep(Duration::from_millis(ms));
        done += 1;
        sum += done;
        let mut state = done.to_le_bytes().to_vec();
        state.extend(sum.to_le_bytes());
        corral_task::checkpoint(&state)?;
        corral_task::progress(done as f32 / n as f32, &format!("counted to {done}"))?;
    }
    corral_task::set_result(&format!("{{\"count\": {n}, \"sum\": {sum}}}"))?;
    println!("counted to {n}");
    Ok(())
}

fn calls(n: u32, kind: &str) -> Result<(), corral_task::Error> {
    let state = [7u8; 64];
    for i in 0..n {
        let fraction = i as f32 / n as f32;
        match kind {
            "progress" => corral_task::progress(fraction, "working")?,
            "checkpoint" => corral_task::checkpoint(&state)?,
            _ => {
                std::hint::black_box((fraction, &state));
            }
        }
    }
    Ok(())
}

fn usage() -> ExitCode {
    eprintln!("usage: sdk_demo steps <n> <ms> | count <n> <ms> | calls <n> <kind>");
    eprintln!("                | result <json> | big-result | big-message");
    ExitCode::from(2)
}
