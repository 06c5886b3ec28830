//! The terminal: raw mode and the alternate screen while the console runs,
//! restored on every way out — normal return, error, signal, or a panic on
//! any thread.

use std::io::{self, Stdout, Write};
use std::sync::Once;
use std::sync::atomic::{AtomicBool, Ordering};

use crossterm::cursor::{Hide, Show};
use crossterm::event::{DisableMouseCapture, EnableMouseCapture};
use crossterm::execute;
use crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use tokio::sync::Notify;

/// Whether the terminal is in the console's state (so restoring twice, from
/// the guard and from the panic hook, is harmless).
static ACTIVE: AtomicBool = AtomicBool::new(false);
/// Whether mouse capture is on: `ratatui::restore` would not undo it.
static MOUSE: AtomicBool = AtomicBool::new(false);
/// Set by the panic hook; the draw loop exits when notified.
pub static PANICKED: AtomicBool = AtomicBool::new(false);
pub static PANIC_NOTIFY: Notify = Notify::const_new();

pub type Term = Terminal<CrosstermBackend<Stdout>>;

/// The runtime every console screen runs on: one thread, the terminal's.
pub fn console_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    use anyhow::Context;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the console's runtime")
}

/// Runs `console` with the terminal in the console's state, restored
/// before this returns (the guard's drop), whatever `console` returns.
pub fn in_terminal<T>(
    mouse: bool,
    console: impl FnOnce(&mut TerminalGuard) -> T,
) -> anyhow::Result<T> {
    use anyhow::Context;
    let mut guard = TerminalGuard::enter(mouse).context("cannot set up the terminal")?;
    let result = console(&mut guard);
    drop(guard);
    Ok(result)
}

/// An error when the console stopped for a panic (whose message the hook
/// printed once the terminal was back).
pub fn stopped_by_panic() -> anyhow::Result<()> {
    if PANICKED.load(Ordering::SeqCst) {
        anyhow::bail!("the console stopped after a panic (see the message above)");
    }
    Ok(())
}

/// Owns the terminal while the console runs; dropping it restores it.
pub struct TerminalGuard {
    pub terminal: Term,
}

impl TerminalGuard {
    pub fn enter(mouse: bool) -> io::Result<Self> {
        install_panic_hook();
        enable_raw_mode()?;
        ACTIVE.store(true, Ordering::SeqCst);
        let mut out = io::stdout();
        // From here on, any error still ends in `Drop` (or `restore`).
        let setup = execute!(out, EnterAlternateScreen, Hide).and_then(|()| {
            if mouse {
                MOUSE.store(true, Ordering::SeqCst);
                execute!(out, EnableMouseCapture)
            } else {
                Ok(())
            }
        });
        if let Err(e) = setup {
            restore();
            return Err(e);
        }
        match Terminal::new(CrosstermBackend::new(io::stdout())) {
            Ok(terminal) => Ok(Self { terminal }),
            Err(e) => {
                restore();
                Err(e)
            }
        }
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore();
    }
}

/// Puts the terminal back as it was. Never panics; errors are ignored
/// because there is nothing better to do with them on the way out.
pub fn restore() {
    if !ACTIVE.swap(false, Ordering::SeqCst) {
        return;
    }
    let mut out = io::stdout();
    if MOUSE.swap(false, Ordering::SeqCst) {
        let _ = execute!(out, DisableMouseCapture);
    }
    let _ = execute!(
        out,
        crossterm::terminal::EndSynchronizedUpdate,
        LeaveAlternateScreen,
        Show
    );
    let _ = disable_raw_mode();
    let _ = out.flush();
}

/// Chains a hook that restores the terminal before the default hook prints
/// the panic, so the message lands on a usable screen. A panic on another
/// thread (the relay's) also stops the draw loop: the hook is global, and a
/// UI that kept drawing over a restored terminal would be garbage.
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let was_active = ACTIVE.load(Ordering::SeqCst);
            restore();
            if was_active {
                PANICKED.store(true, Ordering::SeqCst);
                PANIC_NOTIFY.notify_one();
            }
            previous(info);
        }));
    });
}
