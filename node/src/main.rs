//! `kith`: the command line. Parsing and printing only; the work is in the library.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // Exit status 2 means "finished, but skipped something" (import, export); a usage error
    // is a failure like any other, so it exits 1 rather than clap's 2.
    let args = match cli::Args::try_parse() {
        Ok(args) => args,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    if !args.runs_the_node() {
        die_quietly_on_broken_pipe();
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,kith_node=info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kith: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(cli::execute(args)) {
        Ok(code) => code,
        Err(e) => {
            // An error may quote text from other devices: its hidden characters are escaped.
            let message = format!("{e:#}");
            eprintln!("kith: {}", kith_protocol::names::escape_hidden(&message));
            ExitCode::from(1)
        }
    }
}

/// Rust ignores SIGPIPE, so `println!` panics when the reader has gone (`kith photos | head`).
/// A command that prints and exits dies of SIGPIPE instead, quietly, like other Unix tools.
/// The node keeps SIGPIPE ignored: a closed log pipe must not kill it.
fn die_quietly_on_broken_pipe() {
    #[cfg(unix)]
    // SAFETY: called once at start-up, before any thread is spawned; SIG_DFL is a valid
    // disposition for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
