use std::io;
use std::process::ExitCode;

use clap::Parser;
use ecdn_console::cli::{self, Cli};

fn main() -> ExitCode {
    let args = Cli::parse();
    // stderr is not held locked: the relay's threads log their warnings
    // there (`serve`), and one blocked on the lock would stall.
    let mut out = cli::Stdout::new(io::stdout().lock());
    let result = cli::run(args, &mut out, &mut io::stderr());
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // `events --follow | head -1`: the reader had what it wanted.
        Err(error) if out.reader_gone() && cli::is_broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            if !cli::is_silent(&error) {
                eprintln!("error: {}", cli::error_message(&error));
            }
            ExitCode::from(cli::exit_code(&error))
        }
    }
}
