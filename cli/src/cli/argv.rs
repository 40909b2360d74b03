//! Reading the command line as its users write it: cluster flags before the command, and
//! `corral run`'s older form.

use std::ffi::OsString;

use clap::Parser;

use super::{Cli, Command};

impl Cli {
    /// Parses `argv` (program name first), exiting with clap's message on an error.
    ///
    /// `corral run` reads everything after the module as the task's, as `wasmtime run` does.
    /// The older spelling `corral run MODULE [OPTIONS] -- ARGS` still works: when the words
    /// between the module and a `--` all parse as `corral run` options, they are read as such.
    pub(crate) fn parse_args(argv: Vec<OsString>) -> Self {
        let argv = master_after_command(argv);
        let cli = Self::parse_from(&argv);
        if let Command::Run(run) = &cli.command
            && let Some(older) = older_run_form(&argv, &run.module_and_args)
        {
            return older;
        }
        cli
    }
}

/// `corral --master M <command> …` read as `corral <command> --master M …`, as kubectl and
/// nomad users write cluster flags before the command. The command is the deepest one named
/// (`corral --master M job ls` is `corral job ls --master M`).
fn master_after_command(mut argv: Vec<OsString>) -> Vec<OsString> {
    // The flags before the first command word; `--master` among them is moved.
    let mut moved = Vec::new();
    let mut at = 1;
    while let Some(word) = argv.get(at).and_then(|w| w.to_str()) {
        match word {
            "--master" if at + 1 < argv.len() => moved.extend(argv.drain(at..at + 2)),
            w if w.starts_with("--master=") => moved.push(argv.remove(at)),
            // The global flags that take a value.
            "--token-file" | "--ca-cert" => at += 2,
            w if w.starts_with('-') => at += 1,
            _ => break,
        }
    }
    if moved.is_empty() {
        return argv;
    }
    let mut command = <Cli as clap::CommandFactory>::command();
    while let Some(sub) = argv
        .get(at)
        .and_then(|word| command.find_subcommand(word))
        .cloned()
    {
        command = sub;
        at += 1;
    }
    let at = at.min(argv.len());
    argv.splice(at..at, moved);
    argv
}

/// `corral run MODULE --opt … -- ARGS` read as `corral run --opt … MODULE -- ARGS`, if the
/// words moved are all options of `corral run`.
fn older_run_form(argv: &[OsString], module_and_args: &[String]) -> Option<Cli> {
    let (module, rest) = module_and_args.split_first()?;
    let first = rest.first()?;
    if !first.starts_with('-') || first == "--" {
        return None;
    }
    let dashes = rest.iter().position(|word| word == "--")?;
    let head = argv.get(..argv.len().checked_sub(module_and_args.len())?)?;
    let reordered = head
        .iter()
        .cloned()
        .chain(rest[..dashes].iter().map(OsString::from))
        .chain([OsString::from(module)])
        .chain(rest[dashes..].iter().map(OsString::from));
    let cli = Cli::try_parse_from(reordered).ok()?;
    match &cli.command {
        Command::Run(run) if run.module_and_args.first() == Some(module) => Some(cli),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn master_before_the_command_goes_after_the_deepest_command_named() {
        let moved = |argv: &[&str]| -> Vec<String> {
            let argv = argv.iter().map(OsString::from).collect();
            master_after_command(argv)
                .into_iter()
                .map(|w| w.into_string().unwrap())
                .collect()
        };
        assert_eq!(
            moved(&["corral", "--master", "m:1", "job", "ls", "-o", "json"]),
            ["corral", "job", "ls", "--master", "m:1", "-o", "json"]
        );
        assert_eq!(
            moved(&[
                "corral",
                "--token-file",
                "t",
                "--master=m:1",
                "agent",
                "drain",
                "a"
            ]),
            [
                "corral",
                "--token-file",
                "t",
                "agent",
                "drain",
                "--master=m:1",
                "a"
            ]
        );
        assert_eq!(
            moved(&[
                "corral", "--master", "m:1", "run", "x.wasm", "--", "--master"
            ]),
            [
                "corral", "run", "--master", "m:1", "x.wasm", "--", "--master"
            ]
        );
        // After the command it is the command's own, and the task's after the module.
        let kept = ["corral", "ps", "--master", "m:1"];
        assert_eq!(moved(&kept), kept);
    }

    /// `corral run …`'s options and the module with the task's arguments.
    fn run(words: &[&str]) -> (Option<u64>, Vec<String>) {
        let argv = ["corral", "run"].iter().chain(words).map(OsString::from);
        match Cli::parse_args(argv.collect()).command {
            Command::Run(args) => (args.max_fuel, args.module_and_args),
            other => panic!("{other:?}"),
        }
    }

    fn words(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| (*w).to_owned()).collect()
    }

    #[test]
    fn everything_after_the_module_is_the_tasks_as_with_wasmtime() {
        assert_eq!(
            run(&["--max-fuel", "5", "m.wasm", "--max-fuel", "7", "-x"]),
            (Some(5), words(&["m.wasm", "--max-fuel", "7", "-x"]))
        );
        assert_eq!(
            run(&["m.wasm", "a", "--", "b"]),
            (None, words(&["m.wasm", "a", "--", "b"]))
        );
    }

    #[test]
    fn options_between_the_module_and_dashes_are_read_the_older_way() {
        assert_eq!(
            run(&["m.wasm", "--max-fuel", "7", "--", "spin"]),
            (Some(7), words(&["m.wasm", "--", "spin"]))
        );
        // Not all options of `corral run`: the task's, as written.
        assert_eq!(
            run(&["m.wasm", "--verbose", "--", "spin"]),
            (None, words(&["m.wasm", "--verbose", "--", "spin"]))
        );
        assert_eq!(
            run(&["m.wasm", "--max-fuel", "7", "other", "--", "x"]),
            (
                None,
                words(&["m.wasm", "--max-fuel", "7", "other", "--", "x"])
            )
        );
    }
}
