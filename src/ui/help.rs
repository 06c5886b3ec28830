//! `?`: every key of the current screen, from the table that handles them.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use crate::app::App;
use crate::app::keymap::{Binding, Context, GLOBAL};

use super::theme::Theme;
use super::widgets::{dialog_block, popup};

/// What the session tables' colours and marks mean (short lines: the
/// popup does not wrap).
const LEGEND: &[&str] = &[
    "Idle gauge: green < 50 %, yellow < 80 %,",
    "  red (and ! before the idle time) near the deadline.",
    "Beat: the observed heartbeat, the median gap between",
    "  messages; ! = not shorter than the idle limit, so the",
    "  session is cut between beats (unless pings keep it alive).",
];

pub fn render(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    let context = app.context_behind_help();
    let mut lines = vec![Line::from(Span::styled(context.title(), theme.title()))];
    let push = |lines: &mut Vec<Line>, b: &Binding| {
        lines.push(Line::from(vec![
            Span::styled(format!("  {:<24}", b.keys_label()), theme.key()),
            Span::raw(b.hint),
        ]));
    };
    for b in context.table() {
        push(&mut lines, b);
    }
    lines.push(Line::default());
    lines.push(Line::from(Span::styled("Everywhere", theme.title())));
    for b in GLOBAL {
        push(&mut lines, b);
    }
    if matches!(
        context,
        Context::Sessions | Context::SessionDetail | Context::Manage(_)
    ) {
        lines.push(Line::default());
        for legend in LEGEND {
            lines.push(Line::from(Span::styled(*legend, theme.dim())));
        }
    }
    let h = u16::try_from(lines.len() + 2).unwrap_or(u16::MAX);
    let rect = popup(frame, area, 64, h);
    let scroll = app.help.as_ref().map_or(0, |c| c.index);
    let max_scroll = usize::from(h.saturating_sub(rect.height));
    let scroll = u16::try_from(scroll.min(max_scroll)).unwrap_or(0);
    // On a short terminal the list scrolls: say so, and which way.
    let title = if max_scroll == 0 {
        " Keys · Esc closes "
    } else if usize::from(scroll) < max_scroll {
        " Keys · ↓ more · Esc closes "
    } else {
        " Keys · ↑ more · Esc closes "
    };
    frame.render_widget(
        Paragraph::new(lines)
            .scroll((scroll, 0))
            .block(dialog_block(title, theme)),
        rect,
    );
}
