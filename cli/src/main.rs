//! `corral`: the one binary users run. See `cli.rs` for the commands and `commands/` for
//! what each does.

mod cli;
mod client;
mod commands;
mod output;
mod parse;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse_args(std::env::args_os().collect());
    // An agent's compile worker needs no runtime, token or client.
    if let cli::Command::CompileWorker(args) = &cli.command {
        return std::process::ExitCode::from(commands::compile_worker(args));
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    match runtime.block_on(commands::dispatch(cli)) {
        Ok(code) => std::process::ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            let code = e
                .downcast_ref::<commands::Exit>()
                .map_or(1, |exit| exit.code);
            std::process::ExitCode::from(code)
        }
    }
}
