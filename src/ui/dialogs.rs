//! The modal dialogs: WebSocket edit, forms, confirmations, messages.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};

use crate::app::advice::what_if;
use crate::app::keymap::{self, Context};
use crate::app::{
    App, Command, Confirm, Dialog, FieldValue, Form, Message, SaveError, SaveErrorKind, WsDraft,
};
use crate::config::{MAX_TIMEOUT_SECS, RECOMMENDATION_TEXT, TimeoutSource};

use super::manage::EVIDENCE_PENDING;
use super::theme::Theme;
use super::widgets::{dialog_block, fmt_secs, key_hints, popup, switch_spans, text_input};

pub fn render(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    match &app.dialog {
        Some(Dialog::EditWebSocket(d)) => edit_websocket(frame, area, app, d, theme),
        Some(Dialog::Form(f)) => form(frame, area, f, theme),
        Some(Dialog::Confirm(c)) => confirm(frame, area, c, theme),
        Some(Dialog::Message(m)) => message(frame, area, m, theme),
        None => {}
    }
}

/// Lines describing a failed save: what happened and what to do.
fn error_lines(e: &SaveError, context: Context, theme: &Theme) -> Vec<Line<'static>> {
    let title = match e.kind {
        SaveErrorKind::Conflict => "Not saved: the file changed on disk.",
        SaveErrorKind::Invalid => "Not saved: invalid value.",
        SaveErrorKind::Io => "Not saved: the file could not be written.",
        SaveErrorKind::Refused => "Not changed: Tencent Cloud did not accept it.",
    };
    vec![
        Line::from(Span::styled(title, theme.error())),
        Line::from(e.message.clone()),
        Line::from(Span::styled(e.advice_in(context), theme.warn())),
    ]
}

/// Rows `lines` take when wrapped at `width`.
fn wrapped_height(lines: &[Line], width: u16) -> u16 {
    let width = usize::from(width.max(1));
    let rows: usize = lines.iter().map(|l| l.width().max(1).div_ceil(width)).sum();
    u16::try_from(rows).unwrap_or(u16::MAX)
}

fn slider(value: u16, width: u16, theme: &Theme) -> Line<'static> {
    let width = usize::from(width.max(3));
    let pos = (usize::from(value) * (width - 1)) / usize::from(MAX_TIMEOUT_SECS);
    Line::from(vec![
        Span::raw("0 ├"),
        Span::styled("─".repeat(pos), theme.key()),
        Span::styled("●", theme.value()),
        Span::styled("─".repeat(width - 1 - pos), theme.dim()),
        Span::raw(format!("┤ {MAX_TIMEOUT_SECS}")),
    ])
}

fn edit_websocket(frame: &mut Frame, area: Rect, app: &App, d: &WsDraft, theme: &Theme) {
    let mut lines: Vec<Line> = Vec::new();
    if let Some(e) = &d.field_error {
        lines.push(Line::from(Span::styled(e.clone(), theme.error())));
    }
    let draft = d.effective();
    let live = d.live_effective();
    lines.push(Line::from(vec![
        Span::styled("In force  ", theme.label()),
        Span::raw(live.column_label()),
        Span::styled("   Draft  ", theme.label()),
        Span::styled(
            if d.field_error.is_some() {
                "—".to_string()
            } else {
                draft.column_label()
            },
            if d.differs() {
                theme.value()
            } else {
                theme.base()
            },
        ),
    ]));
    if let Some(was) = d.opened_effective() {
        lines.push(Line::from(Span::styled(
            format!(
                "Changed elsewhere while this was open (it was {}); OK saves your draft over it.",
                was.column_label()
            ),
            theme.warn(),
        )));
    }
    if d.field_error.is_none() {
        lines.push(Line::from(Span::styled(draft.explanation(), theme.dim())));
    }
    if draft.source == TimeoutSource::NoLimit && d.field_error.is_none() {
        lines.push(Line::from(Span::styled(
            "⚠ No idle limit: sessions are never cut for idleness, so dead peers are never dropped.",
            theme.warn(),
        )));
    }
    if d.differs() && d.field_error.is_none() {
        let impact = d.impact(&app.live);
        if impact.cut.is_empty() {
            lines.push(Line::from(Span::styled(
                format!(
                    "Applying cuts no session now ({} live on this domain).",
                    impact.live
                ),
                theme.good(),
            )));
        } else {
            lines.push(Line::from(Span::styled(
                format!(
                    "Applying cuts {} of {} live sessions now — idle longer than {}:",
                    impact.cut.len(),
                    impact.live,
                    draft
                ),
                theme.warn(),
            )));
            let shown: Vec<String> = impact
                .cut
                .iter()
                .take(6)
                .map(|(id, idle)| format!("#{id} idle {}", fmt_secs(*idle)))
                .collect();
            let more = impact.cut.len().saturating_sub(6);
            let mut text = shown.join(", ");
            if more > 0 {
                text.push_str(&format!(", +{more} more"));
            }
            lines.push(Line::from(format!("  {text}")));
        }
        lines.extend(history_lines(app, d, theme));
    }
    if let Some(e) = &d.error {
        lines.extend(error_lines(e, Context::EditWebSocket, theme));
    } else {
        lines.push(Line::from(Span::styled(RECOMMENDATION_TEXT, theme.dim())));
    }
    let width = 76u16.min(area.width.saturating_sub(2));
    let body_height = wrapped_height(&lines, width.saturating_sub(2));
    let rect = popup(frame, area, width, body_height + 7);
    let b = dialog_block(format!(" WebSocket timeout · {} ", d.domain), theme);
    let inner = b.inner(rect);
    frame.render_widget(b, rect);
    let [switch_row, field_row, slider_row, body, buttons] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(2),
        Constraint::Min(0),
        Constraint::Length(1),
    ])
    .areas(inner);

    let ctx = Context::EditWebSocket;
    let mut switch = vec![Span::styled("Switch   ", theme.label())];
    switch.extend(switch_spans(d.switch.is_on(), theme));
    switch.push(Span::raw("  "));
    switch.extend(key_hints(
        keymap::bindings_for(ctx, Command::Toggle),
        "  ",
        theme,
    ));
    frame.render_widget(Paragraph::new(Line::from(switch)), switch_row);

    let [label, field, after] = Layout::horizontal([
        Constraint::Length(9),
        Constraint::Length(5),
        Constraint::Min(0),
    ])
    .areas(field_row);
    frame.render_widget(
        Paragraph::new(Span::styled("Timeout", theme.label())),
        label,
    );
    text_input(frame, field, &d.field, true, theme);
    let note = match (&d.field_error, d.timeout) {
        (Some(_), _) => Span::styled(" s  ✗ invalid", theme.error()),
        (None, 0) => Span::styled(" s  = no idle limit", theme.warn()),
        (None, _) => Span::raw(" s"),
    };
    let mut hints = vec![note, Span::raw("   ")];
    let steps = keymap::bindings_for(ctx, Command::Adjust(0)).filter(|b| b.footer);
    hints.extend(key_hints(
        keymap::typing_binding(ctx).into_iter().chain(steps),
        "  ",
        theme,
    ));
    frame.render_widget(Paragraph::new(Line::from(hints)), after);
    let track_width = slider_row.width.saturating_sub(10);
    frame.render_widget(
        Paragraph::new(slider(d.timeout, track_width, theme)),
        slider_row,
    );

    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), body);

    let mut row = vec![
        Span::raw("  "),
        Span::styled("  OK  ", theme.button(d.ok_focused)),
        Span::raw("   "),
        Span::styled(" Cancel ", theme.button(!d.ok_focused)),
        Span::raw("   "),
    ];
    let keys =
        keymap::bindings_for(ctx, Command::Open).chain(keymap::bindings_for(ctx, Command::Cancel));
    row.extend(key_hints(keys, "  ", theme));
    if d.saving {
        row.push(Span::raw("  saving…"));
    }
    frame.render_widget(Paragraph::new(Line::from(row)), buttons);
}

/// The draft against the last 10 minutes (README, "Advice from evidence"): the sessions it
/// would have cut, and the cuts of live clients it would have spared —
/// where that can be known.
fn history_lines(app: &App, d: &WsDraft, theme: &Theme) -> Vec<Line<'static>> {
    let limit = d.effective().limit;
    let Some(evidence) = app.evidence(&d.domain) else {
        return vec![Line::from(Span::styled(
            format!("Last 10 min: {EVIDENCE_PENDING}"),
            theme.dim(),
        ))];
    };
    let w = what_if(&evidence, limit);
    if w.seen == 0 {
        return vec![Line::from(Span::styled(
            "Last 10 min: no session to compare with.",
            theme.dim(),
        ))];
    }
    let cut = match limit {
        Some(l) => format!(
            "Last 10 min: would have cut {} of {} sessions (idle {} or more, or gone).",
            w.would_have_cut,
            w.seen,
            fmt_secs(l)
        ),
        None => format!("Last 10 min: would have cut none of {} sessions.", w.seen),
    };
    let mut lines = vec![Line::from(Span::styled(
        cut,
        if w.would_have_cut > 0 {
            theme.warn()
        } else {
            theme.good()
        },
    ))];
    if w.cuts > 0 {
        let mut text = format!(
            "Of {} idle cuts: would have saved {} live client(s)",
            w.cuts, w.saved
        );
        if w.unknowable > 0 {
            text.push_str(&format!(
                "; {} cannot be known (cut before a beat showed)",
                w.unknowable
            ));
        }
        text.push('.');
        lines.push(Line::from(text));
    }
    lines
}

fn form(frame: &mut Frame, area: Rect, f: &Form, theme: &Theme) {
    let errors = f.fields.iter().filter(|x| x.error.is_some()).count();
    let extra = if f.error.is_some() { 4 } else { 0 } + usize::from(f.changed_elsewhere) * 2;
    let h = u16::try_from(f.fields.len() + errors + 6 + extra).unwrap_or(20);
    let rect = popup(frame, area, 72, h);
    let b = dialog_block(format!(" {} ", f.title()), theme);
    let inner = b.inner(rect);
    frame.render_widget(b, rect);
    let mut y = inner.y;
    let bottom = inner.y + inner.height;
    for (i, field) in f.fields.iter().enumerate() {
        if y >= bottom {
            break;
        }
        let focused = i == f.focus;
        let row = Rect::new(inner.x, y, inner.width, 1);
        let [label, value] =
            Layout::horizontal([Constraint::Length(17), Constraint::Min(0)]).areas(row);
        let marker = if focused { "▸" } else { " " };
        frame.render_widget(
            Paragraph::new(Span::styled(
                format!("{marker}{}", field.label),
                if focused {
                    theme.value()
                } else {
                    theme.label()
                },
            )),
            label,
        );
        match &field.value {
            FieldValue::Text(input) => text_input(frame, value, input, focused, theme),
            FieldValue::Choice { options, index } => {
                let spans: Vec<Span> = options
                    .iter()
                    .enumerate()
                    .flat_map(|(j, o)| {
                        let style = if j == *index {
                            if focused {
                                theme.selected()
                            } else {
                                theme.value()
                            }
                        } else {
                            theme.dim()
                        };
                        [Span::styled(format!(" {o} "), style), Span::raw(" ")]
                    })
                    .collect();
                frame.render_widget(Paragraph::new(Line::from(spans)), value);
            }
        }
        y += 1;
        if let Some(e) = &field.error
            && y < bottom
        {
            frame.render_widget(
                Paragraph::new(Span::styled(format!("  ✗ {e}"), theme.error())),
                Rect::new(inner.x, y, inner.width, 1),
            );
            y += 1;
        }
    }
    let rest = Rect::new(inner.x, y, inner.width, bottom.saturating_sub(y));
    let mut lines = Vec::new();
    if let Some(field) = f.fields.get(f.focus)
        && !field.help.is_empty()
    {
        lines.push(Line::from(Span::styled(field.help, theme.dim())));
    }
    if f.changed_elsewhere {
        lines.push(Line::from(Span::styled(
            "The origins changed elsewhere while this was open; saving puts these over them.",
            theme.warn(),
        )));
    }
    if let Some(e) = &f.error {
        lines.extend(error_lines(e, Context::Form, theme));
    }
    let ctx = Context::Form;
    let hints = [
        Command::NextTab,
        Command::Adjust(0),
        Command::Open,
        Command::Cancel,
    ]
    .into_iter()
    .flat_map(|c| keymap::bindings_for(ctx, c));
    let mut hint_line = key_hints(hints, "  ", theme);
    if f.saving {
        hint_line.push(Span::raw("  saving…"));
    }
    lines.push(Line::from(hint_line));
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), rest);
}

fn confirm(frame: &mut Frame, area: Rect, c: &Confirm, theme: &Theme) {
    let width = if matches!(c, Confirm::Quit { .. }) {
        84
    } else {
        60
    };
    let rect = popup(frame, area, width, 8);
    let b = dialog_block(format!(" {} ", c.title()), theme);
    let inner = b.inner(rect);
    frame.render_widget(b, rect);
    let [text, buttons] =
        Layout::vertical([Constraint::Min(0), Constraint::Length(1)]).areas(inner);
    frame.render_widget(Paragraph::new(c.question()).wrap(Wrap { trim: true }), text);
    // The answers are the dialog's key bindings, so a key and its button
    // cannot disagree.
    let table = c.context().table();
    let mut spans = Vec::new();
    for (i, binding) in table.iter().enumerate() {
        let key = binding.keys.first().map_or_else(String::new, |k| k.label());
        spans.push(Span::styled(format!(" {key} "), theme.button(i == 0)));
        spans.push(Span::raw(format!(" {}    ", capitalized(binding.hint))));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), buttons);
}

fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_uppercase().chain(chars).collect()
    })
}

fn message(frame: &mut Frame, area: Rect, m: &Message, theme: &Theme) {
    let rect = popup(frame, area, 70, 12);
    let b = dialog_block(format!(" {} ", m.title), theme);
    let inner = b.inner(rect);
    frame.render_widget(b, rect);
    let mut lines = match &m.error {
        Some(e) => error_lines(e, Context::Message, theme),
        None => vec![Line::from(m.body.clone())],
    };
    lines.push(Line::default());
    let mut keys = vec![Span::styled("Enter", theme.key()), Span::raw(" close")];
    if m.error
        .as_ref()
        .is_some_and(|e| e.kind == SaveErrorKind::Conflict)
    {
        keys.push(Span::styled("   r", theme.key()));
        keys.push(Span::raw(" reload the file"));
    }
    lines.push(Line::from(keys));
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: true }), inner);
}
