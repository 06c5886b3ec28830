//! Configuration errors. Each one says which file, where, what value, and
//! how to fix it — an operator should never have to guess.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// A rule broken by a value, without a location: what is wrong (quoting the
/// value) and how to fix it. File validation adds the location; edits from
/// the UI or CLI show it as is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleViolation {
    pub message: String,
    pub fix: String,
}

impl RuleViolation {
    pub fn new(message: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            fix: fix.into(),
        }
    }
}

impl fmt::Display for RuleViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.message)?;
        if !self.fix.is_empty() {
            write!(f, "; {}", self.fix)?;
        }
        Ok(())
    }
}

impl std::error::Error for RuleViolation {}

/// One problem found in a file, with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters.
    pub column: usize,
    pub message: String,
    pub fix: String,
    /// The text of the offending line, for the excerpt.
    pub source_line: String,
}

impl Problem {
    pub fn at(text: &str, offset: usize, message: String, fix: String) -> Self {
        let offset = offset.min(text.len());
        let before = &text[..floor_char_boundary(text, offset)];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        let source_line = text[line_start..]
            .lines()
            .next()
            .unwrap_or_default()
            .to_string();
        Self {
            line,
            column,
            message,
            fix,
            source_line,
        }
    }

    fn write_with_path(&self, f: &mut fmt::Formatter<'_>, path: &str) -> fmt::Result {
        writeln!(f, "{path}:{}:{}: {}", self.line, self.column, self.message)?;
        let gutter = self.line.to_string();
        writeln!(f, "{gutter} | {}", self.source_line)?;
        writeln!(
            f,
            "{} | {}^",
            " ".repeat(gutter.len()),
            " ".repeat(self.column.saturating_sub(1))
        )?;
        if !self.fix.is_empty() {
            writeln!(f, "  fix: {}", self.fix)?;
        }
        Ok(())
    }
}

fn floor_char_boundary(text: &str, mut offset: usize) -> usize {
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

/// Problems of one file, displayed compiler-style.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problems {
    pub path: PathBuf,
    pub problems: Vec<Problem>,
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path.display().to_string();
        let n = self.problems.len();
        writeln!(
            f,
            "{path} is not a valid configuration ({n} problem{}):",
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            p.write_with_path(f, &path)?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },

    #[error("{0}")]
    Invalid(Problems),

    #[error(
        "{} changed on disk since it was loaded; not overwriting someone else's edit. \
         Reload it (in the console: `r`) and apply your change again",
        path.display()
    )]
    Conflict { path: PathBuf },

    #[error(
        "cannot save {}: {source}. The previous file is unchanged; \
         check that the directory is writable and the disk is not full",
        path.display()
    )]
    Write { path: PathBuf, source: io::Error },

    #[error("{0}")]
    Rule(#[from] RuleViolation),
}

impl ConfigError {
    /// The error on one line (for log lines and status bars): each problem
    /// as `path:line:col: message (fix: ...)`, joined with `; `.
    pub fn one_line(&self) -> String {
        match self {
            Self::Invalid(problems) => {
                let path = problems.path.display();
                problems
                    .problems
                    .iter()
                    .map(|p| {
                        let fix = if p.fix.is_empty() {
                            String::new()
                        } else {
                            format!(" (fix: {})", p.fix)
                        };
                        format!("{path}:{}:{}: {}{fix}", p.line, p.column, p.message)
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
            }
            other => other.to_string().replace('\n', " "),
        }
    }

    /// Whether the operator's input (file or value) is at fault, as opposed
    /// to the machine (I/O). The CLI maps this to exit code 2 vs 1.
    pub fn is_bad_input(&self) -> bool {
        matches!(self, Self::Invalid(_) | Self::Rule(_))
    }
}
