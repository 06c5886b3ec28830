//! Pure rendering: reads the [`App`] (and its clock), draws, never mutates
//! state that matters and never does I/O. One module per screen.

mod certificate;
mod cloud;
mod dialogs;
mod domains;
mod events;
mod help;
mod manage;
mod overview;
mod sessions;
pub mod theme;
pub mod widgets;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{List, ListItem, Paragraph};

pub use theme::Theme;

use strum::IntoEnumIterator;

use crate::app::keymap::{self, Bound};
use crate::app::{App, Command, Focus, Screen};

/// Smallest terminal the console draws in.
pub const MIN_WIDTH: u16 = 60;
pub const MIN_HEIGHT: u16 = 16;

/// Width at which tables show all their columns.
pub(crate) const WIDE: u16 = 100;

/// Draws the whole console.
pub fn render(frame: &mut Frame, app: &App, theme: &Theme) {
    let area = frame.area();
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        let msg = format!(
            "Terminal too small ({}×{}); ecdn-console needs at least {MIN_WIDTH}×{MIN_HEIGHT}. Ctrl-C quits.",
            area.width, area.height
        );
        frame.render_widget(
            Paragraph::new(msg).wrap(ratatui::widgets::Wrap { trim: true }),
            area,
        );
        return;
    }
    let banner = app.settings.banner.is_some();
    let status = app.status.as_ref().map(|s| status_paragraph(s, theme));
    let status_height = status.as_ref().map_or(0, |p| {
        // `line_count` leaves the block's left padding to the caller.
        u16::try_from(p.line_count(area.width.saturating_sub(STATUS_INDENT)))
            .unwrap_or(u16::MAX)
            .min(MAX_STATUS_LINES)
    });
    let [header, banner_area, body, status_area, footer_area] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(u16::from(banner)),
        Constraint::Min(0),
        Constraint::Length(status_height),
        Constraint::Length(1),
    ])
    .areas(area);
    render_header(frame, header, app, theme);
    if let Some(text) = &app.settings.banner {
        frame.render_widget(
            Paragraph::new(format!(" {text}")).style(theme.banner()),
            banner_area,
        );
    }
    let [menu_area, content] = Layout::horizontal([
        Constraint::Length(menu_width(area.width, app)),
        Constraint::Min(0),
    ])
    .areas(body);
    if menu_area.width > 0 {
        render_menu(frame, menu_area, app, theme);
    }
    render_content(frame, content, app, theme);
    if let Some(status) = status {
        frame.render_widget(status, status_area);
    }
    render_footer(frame, footer_area, app, theme);
    dialogs::render(frame, area, app, theme);
    if app.help.is_some() {
        help::render(frame, area, app, theme);
    }
}

/// A status message takes the lines it needs, up to this many: a save's
/// error names a path and what to do, and a cut message hides the fix.
const MAX_STATUS_LINES: u16 = 3;
const STATUS_INDENT: u16 = 1;

fn status_paragraph(s: &crate::app::Status, theme: &Theme) -> Paragraph<'static> {
    let style = if s.error { theme.error() } else { theme.good() };
    Paragraph::new(Line::from(Span::styled(s.text.clone(), style)))
        .block(
            ratatui::widgets::Block::new().padding(ratatui::widgets::Padding::left(STATUS_INDENT)),
        )
        .wrap(ratatui::widgets::Wrap { trim: true })
}

/// The menu's width: its entries are the web console's names (a contract),
/// in full. On narrow terminals the menu steps aside while the content has
/// focus (the content title says where you are; Esc or Tab brings it back).
fn menu_width(total: u16, app: &App) -> u16 {
    if total < WIDE && app.focus == Focus::Content {
        0
    } else {
        MENU_WIDTH
    }
}

/// The longest entry, "Domain Management", its marker and the borders.
const MENU_WIDTH: u16 = 20;

/// The menu entry under a mouse click at (`x`, `y`), for `--mouse`.
pub fn menu_hit(area: Rect, app: &App, x: u16, y: u16) -> Option<Screen> {
    let top = 1 + u16::from(app.settings.banner.is_some()) + 1; // header, banner, border
    if x >= menu_width(area.width, app) || y < top {
        return None;
    }
    Screen::iter().nth(usize::from(y - top))
}

fn render_header(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    if let Some(view) = app.cloud() {
        let text = format!(
            " ecdn-console │ Tencent Cloud │ {} domains │ {}",
            app.config.domains.len(),
            view.endpoint
        );
        frame.render_widget(Paragraph::new(text).style(theme.header()), area);
        return;
    }
    let relay = app
        .settings
        .relay_addr
        .map_or_else(|| "relay not running".to_string(), |a| format!("relay {a}"));
    // Attached to a relay in another process: say so, and whose it is.
    let relay = match app.relay.remote() {
        Some(r) => format!("attached to {relay} (pid {})", r.pid),
        None => relay,
    };
    let live = app.live.len();
    let prefix = format!(" ecdn-console │ {relay} │ {live} live │ ");
    // A long path loses its start, not the file's name.
    let room = usize::from(area.width).saturating_sub(prefix.chars().count());
    let path = widgets::clip_start(&app.settings.config_path.display().to_string(), room);
    let text = format!("{prefix}{path}");
    frame.render_widget(Paragraph::new(text).style(theme.header()), area);
}

fn render_menu(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    let focused = app.focus == Focus::Menu && app.dialog.is_none();
    let items: Vec<ListItem> = Screen::iter()
        .map(|s| {
            let title = s.title();
            let selected = s == app.screen;
            let marker = if selected { "▸" } else { " " };
            let style = match (selected, focused) {
                (true, true) => theme.selected(),
                (true, false) => theme.selected_inactive(),
                _ => theme.base(),
            };
            ListItem::new(Line::from(Span::styled(format!("{marker}{title}"), style)))
        })
        .collect();
    frame.render_widget(
        List::new(items).block(widgets::block(" Menu ", focused, theme)),
        area,
    );
}

fn render_content(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    let focused = app.focus == Focus::Content && app.dialog.is_none();
    match app.screen {
        Screen::Overview => overview::render(frame, area, app, focused, theme),
        Screen::Domains => match &app.domains.manage {
            Some(_) => manage::render(frame, area, app, focused, theme),
            None => domains::render(frame, area, app, focused, theme),
        },
        Screen::Sessions | Screen::Events if app.is_cloud() => {
            cloud::no_sessions(frame, area, app.screen.title(), focused, theme);
        }
        Screen::Sessions => sessions::render(frame, area, app, focused, theme),
        Screen::Events => events::render(frame, area, app, focused, theme),
    }
}

/// The keys of the current context, from the same table that handles them.
/// Hints that do not fit are dropped whole, from the right; `? help` stays
/// at the right edge however narrow the terminal.
fn render_footer(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    let context = app.context();
    // Ctrl-C quits from anywhere; the help lists it (and on the menu
    // Esc/q already says "quit").
    let bindings: Vec<_> = keymap::footer(context)
        .filter(|b| !matches!(b.bound, Bound::Cmd(Command::Help | Command::Quit)))
        .collect();
    let mut hints = Vec::new();
    let mut i = 0;
    while i < bindings.len() {
        let b = bindings[i];
        // ↑ and ↓ side by side read better as one "move" entry.
        let hint = match (b.bound, bindings.get(i + 1).map(|n| n.bound)) {
            (Bound::Cmd(Command::Up), Some(Bound::Cmd(Command::Down))) => {
                i += 1;
                ("↑↓".to_string(), "move")
            }
            _ => (b.keys_label(), b.hint),
        };
        hints.push(hint);
        i += 1;
    }
    let help = if context.types_text() || context == keymap::Context::Help {
        Line::default()
    } else {
        Line::from(vec![Span::styled("?", theme.key()), Span::raw(" help ")])
    };
    let help_width = u16::try_from(help.width()).unwrap_or(0);
    let [keys_area, help_area] =
        Layout::horizontal([Constraint::Min(0), Constraint::Length(help_width)]).areas(area);
    let room = usize::from(keys_area.width);
    let mut spans = vec![Span::raw(" ")];
    let mut used = 1;
    for (keys, hint) in hints {
        let width = keys.chars().count() + 1 + hint.chars().count();
        // Two spaces before the next hint, or before `? help`.
        if used + width + 2 > room {
            break;
        }
        used += width + 2;
        spans.push(Span::styled(keys, theme.key()));
        spans.push(Span::raw(format!(" {hint}  ")));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), keys_area);
    frame.render_widget(Paragraph::new(help), help_area);
}

#[cfg(test)]
mod tests;
