//! SIGUSR2: the relay upgrades itself in place, as nginx's binary upgrade
//! does under a service manager. It starts the binary at its own path
//! again — after a package upgrade, the new one — as `serve --takeover`
//! with the same config, options, output and environment. Under systemd
//! the new process is thus in the same unit, and once it holds the
//! sessions it tells systemd it is the main process now (`MAINPID`; the
//! unit needs `NotifyAccess=all`). The hand-over is the ordinary one: this
//! process exits once it holds no session; if the new one fails, nothing
//! changed and this one carries on.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};

use clap::ValueEnum;
use tokio::process::{Child, Command};

use super::ServeOptions;

/// The binary to start: this process's, by path. When a package upgrade
/// replaced the file, `/proc/self/exe` names the old, deleted one as
/// `PATH (deleted)`: the new file is at `PATH`.
pub fn program() -> io::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let text = exe.to_string_lossy();
    Ok(match text.strip_suffix(" (deleted)") {
        Some(path) => PathBuf::from(path),
        None => exe,
    })
}

/// `ecdn-console serve --config CONFIG --takeover --socket SOCKET`, from
/// this binary's path: the relay that takes the one on `socket` over (an
/// upgrade in place, or a console's kept sessions).
pub fn takeover_command(config: &Path, socket: &Path) -> io::Result<std::process::Command> {
    let mut command = std::process::Command::new(program()?);
    command
        .arg("serve")
        .arg("--config")
        .arg(std::path::absolute(config)?)
        .arg("--takeover")
        .arg("--socket")
        .arg(socket);
    Ok(command)
}

/// Starts the relay that will take this one (on control socket `socket`,
/// config `config`) over, with this one's command-line options.
pub fn spawn(config: &Path, socket: &Path, options: &ServeOptions) -> io::Result<(Child, PathBuf)> {
    let program = program()?;
    let mut command = Command::from(takeover_command(config, socket)?);
    if let Some(format) = options.format.to_possible_value() {
        command.arg("--log-format").arg(format.get_name());
    }
    if let Some(addr) = options.admin {
        command.arg("--admin").arg(addr.to_string());
    }
    if let Some(n) = options.workers {
        command.arg("--workers").arg(n.to_string());
    }
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .spawn()?;
    Ok((child, program))
}

/// Waits for the new relay to exit, if one was started; never otherwise.
pub async fn exited(child: &mut Option<Child>) -> io::Result<ExitStatus> {
    match child {
        Some(child) => child.wait().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_program_is_this_binary_by_path() {
        let program = program().unwrap();
        assert!(program.is_absolute(), "{}", program.display());
        assert!(!program.to_string_lossy().ends_with(" (deleted)"));
    }
}
