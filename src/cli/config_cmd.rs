//! `config check [FILE]`.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Subcommand;

use super::{open_config, table};
use crate::config::{Config, ConfigFile, effective_timeout};

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate a configuration file and summarise it
    ///
    /// Prints each domain's effective idle timeout. Problems are listed with
    /// file, line, column, the offending value and the fix; the exit code is
    /// then 2.
    Check {
        /// The file to check [default: the --config file]. Never created:
        /// checking a file that does not exist is an error
        file: Option<PathBuf>,
    },
}

pub fn run(
    cmd: ConfigCommand,
    config_path: Option<&Path>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<()> {
    match cmd {
        ConfigCommand::Check { file } => {
            let file = match file {
                Some(path) => ConfigFile::load(&path)?,
                None => open_config(config_path, err)?,
            };
            out.write_all(summary(file.path(), file.config()).as_bytes())?;
            Ok(())
        }
    }
}

/// One OK line, then each domain's effective idle timeout: what an operator
/// checking a file usually wants to confirm.
fn summary(path: &Path, config: &Config) -> String {
    let n = config.domains.len();
    let mut text = format!(
        "ok: {} is valid ({n} domain{}; relay listens on {})\n",
        path.display(),
        if n == 1 { "" } else { "s" },
        config.relay.listen
    );
    if n == 0 {
        return text;
    }
    let rows: Vec<Vec<String>> = config
        .domains
        .iter()
        .map(|d| {
            let t = effective_timeout(d);
            vec![d.name.to_string(), t.column_label(), t.explanation()]
        })
        .collect();
    text.push('\n');
    text.push_str(&table::render(
        &["Domain", "WebSocket", "Idle sessions"],
        &rows,
    ));
    text
}
