//! `?`: every key of the current screen, from the table that handles them.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use crate::app::App;
use crate::app::keymap::{Binding, GLOBAL};

use super::theme::Theme;
use super::widgets::{dialog_block, popup};

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
    lines.push(Line::default());
    lines.push(Line::from(Span::styled(
        "Idle gauges: green < 50 %, yellow < 80 %, red (and !) near the deadline.",
        theme.dim(),
    )));
    let h = u16::try_from(lines.len() + 2).unwrap_or(u16::MAX);
    let rect = popup(frame, area, 64, h);
    let scroll = app.help.as_ref().map_or(0, |c| c.index);
    let max_scroll = usize::from(h.saturating_sub(rect.height));
    let scroll = u16::try_from(scroll.min(max_scroll)).unwrap_or(0);
    frame.render_widget(
        Paragraph::new(lines)
            .scroll((scroll, 0))
            .block(dialog_block(" Keys · Esc closes ", theme)),
        rect,
    );
}
