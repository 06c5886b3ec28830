//! Small shared pieces: formatting, the idle gauge, popups, text inputs.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ratatui::Frame;
use ratatui::layout::{Position, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Clear, Paragraph};
use tui_input::Input;

use crate::relay::SessionSnapshot;

use super::theme::{Level, Theme};

/// `37 s`, `12 m 05 s`, `3 h 20 m`.
pub fn fmt_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s < 60 {
        format!("{s} s")
    } else if s < 3600 {
        format!("{} m {:02} s", s / 60, s % 60)
    } else {
        format!("{} h {:02} m", s / 3600, (s % 3600) / 60)
    }
}

/// Seconds only, the way timeouts are configured: `37 s`, `1200 s`.
pub fn fmt_secs(d: Duration) -> String {
    format!("{} s", d.as_secs())
}

/// A countdown, in whole seconds rounded up: with the idle time shown
/// rounded down, the two add up to the limit, and it never reads `0 s`
/// before the moment comes.
pub fn fmt_secs_left(d: Duration) -> String {
    format!("{} s", d.as_secs() + u64::from(d.subsec_nanos() > 0))
}

/// `512 B`, `3.4 K`, `12 M` — short enough for a table column.
pub fn fmt_bytes(n: u64) -> String {
    const K: f64 = 1024.0;
    let f = n as f64;
    if n < 1024 {
        format!("{n} B")
    } else if f < K * K {
        format!("{:.1} K", f / K)
    } else if f < K * K * K {
        format!("{:.1} M", f / (K * K))
    } else {
        format!("{:.1} G", f / (K * K * K))
    }
}

/// `HH:MM:SS` (UTC) of a wall-clock time.
pub fn fmt_wall(t: SystemTime) -> String {
    let s = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) % 86_400;
    format!("{:02}:{:02}:{:02}", s / 3600, (s % 3600) / 60, s % 60)
}

/// How close a session is to being cut for idleness.
pub fn level(s: &SessionSnapshot) -> Level {
    let Some(remaining) = s.remaining else {
        return Level::None;
    };
    let ratio = s.idle_ratio();
    if ratio >= 0.8 || remaining <= Duration::from_secs(5) {
        Level::Danger
    } else if ratio >= 0.5 {
        Level::Warn
    } else {
        Level::Ok
    }
}

/// `37 s / 60 s`, or `37 s / no limit`.
pub fn idle_label(s: &SessionSnapshot) -> String {
    match s.timeout {
        Some(t) => format!("{} / {}", fmt_secs(s.idle), fmt_secs(t)),
        None => format!("{} / no limit", fmt_secs(s.idle)),
    }
}

/// A text gauge of how much of the idle allowance is used, `width` cells.
pub fn gauge(s: &SessionSnapshot, width: u16, theme: &Theme) -> Line<'static> {
    let width = usize::from(width);
    let lvl = level(s);
    if lvl == Level::None {
        return Line::from(Span::styled("·".repeat(width), theme.dim()));
    }
    let filled = ((s.idle_ratio() * width as f64).round() as usize).min(width);
    let empty_char = if theme.mono { "·" } else { "░" };
    Line::from(vec![
        Span::styled("█".repeat(filled), theme.level(lvl)),
        Span::styled(empty_char.repeat(width - filled), theme.dim()),
    ])
}

/// The WebSocket switch: `[ ON ]` loud (a filled, bold label) and
/// `[ off ]` quiet, the same width, so it reads without colour too.
pub fn switch_spans(on: bool, theme: &Theme) -> Vec<Span<'static>> {
    if on {
        vec![
            Span::raw("["),
            Span::styled(" ON ", theme.switch_on()),
            Span::raw("] "),
        ]
    } else {
        vec![
            Span::raw("["),
            Span::styled(" off ", theme.dim()),
            Span::raw("]"),
        ]
    }
}

/// A centred popup of at most `w`×`h`, cleared.
pub fn popup(frame: &mut Frame, area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width.saturating_sub(2)).max(1);
    let h = h.min(area.height.saturating_sub(2)).max(1);
    let x = area.x + (area.width.saturating_sub(w)) / 2;
    let y = area.y + (area.height.saturating_sub(h)) / 2;
    let rect = Rect::new(x, y, w, h);
    frame.render_widget(Clear, rect);
    rect
}

pub fn block<'a>(title: impl Into<Line<'a>>, focused: bool, theme: &Theme) -> Block<'a> {
    Block::bordered()
        .border_type(if focused {
            BorderType::Thick
        } else {
            BorderType::Plain
        })
        .border_style(theme.border(focused))
        .title(title.into().style(theme.title()))
}

pub fn dialog_block<'a>(title: impl Into<Line<'a>>, theme: &Theme) -> Block<'a> {
    Block::bordered()
        .border_type(BorderType::Double)
        .border_style(theme.border(true))
        .title(title.into().style(theme.title()))
}

/// `Label       value` with the label padded to `width`.
pub fn kv<'a>(label: &'a str, width: usize, value: Vec<Span<'a>>, theme: &Theme) -> Line<'a> {
    let mut spans = vec![Span::styled(format!("{label:<width$}"), theme.label())];
    spans.extend(value);
    Line::from(spans)
}

/// A one-line text field with a visible cursor when focused.
pub fn text_input(frame: &mut Frame, area: Rect, input: &Input, focused: bool, theme: &Theme) {
    let width = usize::from(area.width.max(1));
    let scroll = input.visual_scroll(width.saturating_sub(1));
    let para = Paragraph::new(input.value())
        .scroll((0, u16::try_from(scroll).unwrap_or(0)))
        .style(theme.input(focused));
    frame.render_widget(para, area);
    if focused {
        let x = input.visual_cursor().saturating_sub(scroll);
        let x = area.x
            + u16::try_from(x)
                .unwrap_or(0)
                .min(area.width.saturating_sub(1));
        frame.set_cursor_position(Position::new(x, area.y));
    }
}

/// Splits `s` into the first `width` display columns (no wrapping).
pub fn clip(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_string();
    }
    let mut out: String = s.chars().take(width.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// The last `width` columns of `s`, after a `…` when some had to go: for a
/// path, whose end (the file) says the most.
pub fn clip_start(s: &str, width: usize) -> String {
    let count = s.chars().count();
    if count <= width {
        return s.to_string();
    }
    let keep = width.saturating_sub(1);
    let mut out = String::from("…");
    out.extend(s.chars().skip(count - keep));
    out
}

/// A style for "this row is selected" that depends on focus.
pub fn row_highlight(focused: bool, theme: &Theme) -> Style {
    if focused {
        theme.selected()
    } else {
        theme.selected_inactive()
    }
}

/// `key hint` spans for each binding, as the footer writes them, `gap`
/// between hints.
pub fn key_hints<'a>(
    bindings: impl IntoIterator<Item = &'a crate::app::keymap::Binding>,
    gap: &str,
    theme: &Theme,
) -> Vec<Span<'static>> {
    let mut spans = Vec::new();
    for (i, b) in bindings.into_iter().enumerate() {
        if i > 0 {
            spans.push(Span::raw(gap.to_string()));
        }
        spans.push(Span::styled(b.keys_label(), theme.key()));
        spans.push(Span::raw(format!(" {}", b.hint)));
    }
    spans
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Idle 4.6 s of a 12 s limit reads "4 s" idle and "cut in 8 s": the
    /// two add up to the limit, as an operator checks them.
    #[test]
    fn a_countdown_rounds_up_so_idle_and_left_add_up_to_the_limit() {
        let idle = Duration::from_millis(4_600);
        let left = Duration::from_secs(12) - idle;
        assert_eq!(
            (fmt_secs(idle), fmt_secs_left(left)),
            ("4 s".into(), "8 s".into())
        );
        assert_eq!(fmt_secs_left(Duration::from_secs(7)), "7 s");
        assert_eq!(
            fmt_secs_left(Duration::from_millis(1)),
            "1 s",
            "never 0 s before the cut"
        );
    }
}
