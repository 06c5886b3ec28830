use std::io;
use std::process::ExitCode;

use clap::Parser;
use ecdn_console::cli::{self, Cli};

fn main() -> ExitCode {
    let args = Cli::parse();
    let result = cli::run(args, &mut io::stdout().lock(), &mut io::stderr().lock());
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            if !cli::is_silent(&error) {
                eprintln!("error: {}", cli::error_message(&error));
            }
            ExitCode::from(cli::exit_code(&error))
        }
    }
}
