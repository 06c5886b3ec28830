//! `demo`: the console on a temporary copy of the demo config, with an
//! embedded origin and synthetic clients (see `crate::demo`).

use std::io::{IsTerminal, Write};
use std::path::Path;

use anyhow::Result;
use clap::Args;

use super::BadInput;

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// No colours (also when NO_COLOR is set); selection is shown in reverse video
    #[arg(long)]
    pub no_color: bool,
    /// Enable the mouse (click the menu, scroll lists)
    #[arg(long)]
    pub mouse: bool,
}

pub fn run(
    args: &DemoArgs,
    global: &crate::tui::Options,
    config_path: Option<&Path>,
    err: &mut dyn Write,
) -> Result<()> {
    if let Some(path) = config_path {
        return Err(BadInput(format!(
            "the demo runs on a temporary copy of its own config and never opens {}; \
             drop --config, or run `ecdn-console --config {}` for the console on that file",
            path.display(),
            path.display()
        ))
        .into());
    }
    if !(std::io::stdin().is_terminal() && std::io::stdout().is_terminal()) {
        writeln!(err, "ecdn-console demo draws the console in this terminal.")?;
        return Err(BadInput("the demo needs a terminal: run it in one".into()).into());
    }
    crate::demo::run(&crate::tui::Options {
        config_path: None,
        no_color: global.no_color || args.no_color,
        mouse: global.mouse || args.mouse,
        banner: None,
        sessions_in_process: true,
    })
}
