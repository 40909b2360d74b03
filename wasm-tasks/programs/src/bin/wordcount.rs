//! `wordcount [input] [output]`: counts lines, words and bytes of `input` (default
//! `input.txt`), prints `lines words bytes` and writes that line plus the ten most frequent
//! words (`word count`, by count descending, then word) to `output` (default `result.txt`).
//!
//! Lines are counted like `str::lines` (a last line without a newline counts), words are
//! runs of non-whitespace, compared exactly (no case folding). Exit codes: 2 if the input
//! cannot be read, 1 if the output cannot be written.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::process::ExitCode;

const TOP: usize = 10;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let input = args.next().unwrap_or_else(|| "input.txt".to_owned());
    let output = args.next().unwrap_or_else(|| "result.txt".to_owned());

    let data = match std::fs::read(&input) {
        Ok(data) => data,
        Err(err) => {
            eprintln!("wordcount: cannot read input file {input}: {err}");
            return ExitCode::from(2);
        }
    };
    let text = String::from_utf8_lossy(&data);

    let lines = text.lines().count();
    let mut words = 0usize;
    let mut freq: HashMap<&str, usize> = HashMap::new();
    for word in text.split_whitespace() {
        words += 1;
        *freq.entry(word).or_insert(0) += 1;
    }
    let mut ranked: Vec<(&str, usize)> = freq.into_iter().collect();
    ranked.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));

    let summary = format!("{lines} {words} {}", data.len());
    println!("{summary}");

    let mut report = summary;
    report.push('\n');
    for (word, count) in ranked.iter().take(TOP) {
        let _ = writeln!(report, "{word} {count}");
    }
    if let Err(err) = std::fs::write(&output, report) {
        eprintln!("wordcount: cannot write result file {output}: {err}");
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}
