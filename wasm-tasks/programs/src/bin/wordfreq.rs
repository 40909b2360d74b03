//! `wordfreq map <dir> <parts>` | `wordfreq reduce <dir>`: word count as map/reduce, for the
//! jobs framework's pipeline example (`wasm-tasks/mapreduce/`).
//!
//! - `map`: instance `CORRAL_TASK_INDEX` of `<parts>` counts the words of every `<parts>`-th
//!   file of `<dir>` (sorted by name, starting at its index) and writes `word count` lines,
//!   sorted by word, to `/outputs/counts.txt`; prints `map <i>: <files> files, <words> words`.
//! - `reduce`: sums the counts of every file under `<dir>` (the maps' outputs, as
//!   `<dir>/<index>/counts.txt`), writes them by count descending, then word, to
//!   `/outputs/wordcount.txt`, and prints `<words> words, <distinct> distinct` and the top 10.
//!
//! Words are runs of letters and digits, lowercased. Exit codes: 2 for usage errors or an
//! unreadable input, 1 if the output cannot be written.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const OUTPUTS: &str = "/outputs";
const TOP: usize = 10;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["map", dir, parts] => map(Path::new(dir), parts),
        ["reduce", dir] => reduce(Path::new(dir)),
        _ => Err((2, "usage: wordfreq map <dir> <parts> | wordfreq reduce <dir>".into())),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, message)) => {
            eprintln!("wordfreq: {message}");
            ExitCode::from(code)
        }
    }
}

type Failure = (u8, String);

fn map(dir: &Path, parts: &str) -> Result<(), Failure> {
    let parts: usize = parts
        .parse()
        .ok()
        .filter(|p| *p > 0)
        .ok_or((2, format!("invalid <parts> {parts:?}")))?;
    let index: usize = std::env::var("CORRAL_TASK_INDEX")
        .ok()
        .and_then(|i| i.parse().ok())
        .unwrap_or(0);
    let files = files_under(dir)?;
    let mine: Vec<&PathBuf> = files.iter().skip(index).step_by(parts).collect();
    let mut counts = BTreeMap::new();
    let mut words = 0u64;
    for file in &mine {
        let text = read(file)?;
        for word in words_of(&text) {
            words += 1;
            *counts.entry(word).or_insert(0u64) += 1;
        }
    }
    let mut out = String::new();
    for (word, count) in &counts {
        let _ = writeln!(out, "{word} {count}");
    }
    write_output("counts.txt", &out)?;
    println!("map {index}: {} files, {words} words", mine.len());
    Ok(())
}

fn reduce(dir: &Path) -> Result<(), Failure> {
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for file in files_under(dir)? {
        for line in read(&file)?.lines() {
            let parsed = line
                .rsplit_once(' ')
                .and_then(|(word, n)| Some((word, n.parse::<u64>().ok()?)));
            let Some((word, n)) = parsed else {
                return Err((2, format!("{}: not a `word count` line: {line:?}", file.display())));
            };
            *counts.entry(word.to_owned()).or_insert(0) += n;
        }
    }
    let mut ranked: Vec<(&String, &u64)> = counts.iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let mut out = String::new();
    for (word, count) in &ranked {
        let _ = writeln!(out, "{word} {count}");
    }
    write_output("wordcount.txt", &out)?;
    let total: u64 = counts.values().sum();
    println!("{total} words, {} distinct", counts.len());
    for (word, count) in ranked.iter().take(TOP) {
        println!("{word} {count}");
    }
    Ok(())
}

/// Every file under `dir`, recursively, sorted by path.
fn files_under(dir: &Path) -> Result<Vec<PathBuf>, Failure> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        let entries =
            std::fs::read_dir(&d).map_err(|e| (2, format!("cannot list {}: {e}", d.display())))?;
        for entry in entries {
            let path = entry
                .map_err(|e| (2, format!("cannot list {}: {e}", d.display())))?
                .path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

fn read(path: &Path) -> Result<String, Failure> {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .map_err(|e| (2, format!("cannot read {}: {e}", path.display())))
}

fn words_of(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
}

fn write_output(name: &str, text: &str) -> Result<(), Failure> {
    let dir = Path::new(OUTPUTS);
    std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(dir.join(name), text))
        .map_err(|e| (1, format!("cannot write {OUTPUTS}/{name}: {e}")))
}
