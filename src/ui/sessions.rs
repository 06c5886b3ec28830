//! Live Sessions, and a session's recent frames. Only the rows on screen
//! are built, so ten thousand sessions cost no more than twenty.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table, TableState};

use crate::app::{App, ListCursor, SessionDetail};
use crate::relay::{Direction, RelayEvent, SessionSnapshot};

use super::theme::{Level, Theme};
use super::widgets::{
    block, fmt_bytes, fmt_duration, fmt_secs, gauge, idle_label, kv, level, row_highlight,
};

pub fn render(frame: &mut Frame, area: Rect, app: &App, focused: bool, theme: &Theme) {
    if let Some(detail) = &app.sessions.detail {
        render_detail(frame, area, app, detail, focused, theme);
        return;
    }
    let title = format!(
        " Live Sessions · {} · sorted by {} ",
        app.live.len(),
        app.sessions.sort.label()
    );
    let outer = block(title, focused, theme);
    let inner = outer.inner(area);
    frame.render_widget(outer, area);
    let refs: Vec<&SessionSnapshot> = app.live.iter().collect();
    session_table(
        frame,
        inner,
        &refs,
        &app.sessions.cursor,
        focused,
        true,
        theme,
    );
}

/// A table of sessions; `show_domain` is false on a domain's own tab.
pub fn session_table(
    frame: &mut Frame,
    area: Rect,
    sessions: &[&SessionSnapshot],
    cursor: &ListCursor,
    focused: bool,
    show_domain: bool,
    theme: &Theme,
) {
    if sessions.is_empty() {
        frame.render_widget(
            Paragraph::new(Span::styled(
                "No live sessions. Clients connect to the relay with a domain's name in their Host header.",
                theme.dim(),
            ))
            .wrap(ratatui::widgets::Wrap { trim: true }),
            area,
        );
        return;
    }
    // Three layouts: every column; the main ones; what fits in 80 columns.
    let full = area.width >= 133;
    let mid = area.width >= 100;
    let gauge_width: u16 = if mid { 10 } else { 8 };
    let height = usize::from(area.height.saturating_sub(1));
    let window = cursor.window(sessions.len(), height);
    let rows: Vec<Row> = sessions[window.clone()]
        .iter()
        .map(|s| {
            let lvl = level(s);
            // Near the deadline the idle text gets a `!`, for eyes (and
            // terminals) that miss colour.
            let idle_text = if lvl == Level::Danger {
                format!("!{}", idle_label(s))
            } else {
                idle_label(s)
            };
            let idle_style = if lvl == Level::Danger {
                theme.level(lvl)
            } else {
                theme.base()
            };
            let mut cells: Vec<Cell> = vec![format!("#{}", s.id).into()];
            if show_domain {
                cells.push(s.domain.to_string().into());
            }
            if mid {
                cells.push(s.client.to_string().into());
            }
            if full {
                cells.push(s.origin.to_string().into());
            }
            if mid {
                cells.push(format!("{:>9}", fmt_duration(s.age)).into());
            }
            cells.push(Line::from(Span::styled(format!("{idle_text:>14}"), idle_style)).into());
            cells.push(gauge(s, gauge_width, theme).into());
            if full {
                for f in [&s.to_origin, &s.to_client] {
                    cells.push(format!("{:>5} {:>8}", f.messages, fmt_bytes(f.bytes)).into());
                }
            } else {
                cells.push(
                    format!("{:>4}/{:<4}", s.to_origin.messages, s.to_client.messages).into(),
                );
                if mid {
                    cells.push(
                        format!(
                            "{:>6}/{:<6}",
                            fmt_bytes(s.to_origin.bytes),
                            fmt_bytes(s.to_client.bytes)
                        )
                        .into(),
                    );
                }
            }
            cells.push(last_frame(s).into());
            Row::new(cells)
        })
        .collect();

    let mut header: Vec<&str> = vec!["ID"];
    let mut widths = vec![Constraint::Length(6)];
    if show_domain {
        header.push("Domain");
        widths.push(Constraint::Fill(1));
    }
    if mid {
        header.push("Client");
        widths.push(Constraint::Length(if full { 21 } else { 15 }));
    }
    if full {
        header.push("Origin");
        widths.push(Constraint::Length(15));
    }
    if mid {
        header.push("      Age");
        widths.push(Constraint::Length(9));
    }
    header.extend(["  Idle / limit", "Deadline"]);
    widths.extend([Constraint::Length(14), Constraint::Length(gauge_width)]);
    if full {
        header.extend(["→origin msgs B", "→client msgs B"]);
        widths.extend([Constraint::Length(14), Constraint::Length(14)]);
    } else {
        header.push("msgs ↑/↓");
        widths.push(Constraint::Length(9));
        if mid {
            header.push("  bytes ↑/↓");
            widths.push(Constraint::Length(13));
        }
    }
    header.push("Last");
    widths.push(Constraint::Length(8));

    let table = Table::new(rows, widths)
        .header(Row::new(header).style(theme.table_header()))
        .column_spacing(1)
        .row_highlight_style(row_highlight(focused, theme));
    let mut state =
        TableState::default().with_selected(Some(cursor.index.saturating_sub(window.start)));
    frame.render_stateful_widget(table, area, &mut state);
}

fn last_frame(s: &SessionSnapshot) -> String {
    match s.last_frame {
        None => "—".to_string(),
        Some((Direction::ClientToOrigin, k)) => format!("↑ {}", k.as_str()),
        Some((Direction::OriginToClient, k)) => format!("↓ {}", k.as_str()),
    }
}

/// One session: its counters and recent frames, newest first.
pub fn render_detail(
    frame: &mut Frame,
    area: Rect,
    app: &App,
    detail: &SessionDetail,
    focused: bool,
    theme: &Theme,
) {
    let outer = block(format!(" Session #{} ", detail.id), focused, theme);
    let inner = outer.inner(area);
    frame.render_widget(outer, area);

    let Some(stats) = app.registry.get(detail.id) else {
        let mut lines = vec![Line::from(Span::styled(
            format!("Session #{} has ended.", detail.id),
            theme.value(),
        ))];
        if let Some(RelayEvent::Closed {
            cause,
            to_client,
            to_origin,
            idle,
            duration,
            ..
        }) = app.log.closed_event(detail.id)
        {
            let w = 14;
            let none = || "none".to_string();
            lines.push(Line::default());
            lines.push(kv("Reason", w, vec![Span::raw(cause.to_string())], theme));
            lines.push(kv(
                "To client",
                w,
                vec![Span::raw(
                    to_client.as_ref().map_or_else(none, |c| c.to_string()),
                )],
                theme,
            ));
            lines.push(kv(
                "To origin",
                w,
                vec![Span::raw(
                    to_origin.as_ref().map_or_else(none, |c| c.to_string()),
                )],
                theme,
            ));
            lines.push(kv(
                "Idle at close",
                w,
                vec![Span::raw(fmt_duration(*idle))],
                theme,
            ));
            lines.push(kv(
                "Lasted",
                w,
                vec![Span::raw(fmt_duration(*duration))],
                theme,
            ));
        }
        lines.push(Line::default());
        lines.push(Line::from(Span::styled("Esc: back", theme.dim())));
        frame.render_widget(Paragraph::new(lines), inner);
        return;
    };
    let s = stats.snapshot(app.clock.mono);
    let w = 11;
    let gap = |d: Direction| {
        let g = stats.message_gaps(d);
        match (g.median, g.max) {
            (Some(med), Some(max)) => format!(
                "median {:.1} s, max {:.1} s ({} samples)",
                med.as_secs_f64(),
                max.as_secs_f64(),
                g.samples
            ),
            _ => "none yet".to_string(),
        }
    };
    let flow = |label, f: &crate::relay::FlowSnapshot, d| {
        let text = format!(
            "{} msgs, {} frames, {} · gaps {}",
            f.messages,
            f.frames,
            fmt_bytes(f.bytes),
            gap(d)
        );
        kv(label, w, vec![Span::raw(text)], theme)
    };
    let lvl = level(&s);
    let info = vec![
        kv(
            "Domain",
            w,
            vec![
                Span::styled(s.domain.to_string(), theme.value()),
                Span::raw(format!("  path {}", s.path)),
            ],
            theme,
        ),
        kv(
            "Client",
            w,
            vec![Span::raw(format!("{}  → origin {}", s.client, s.origin))],
            theme,
        ),
        kv("Age", w, vec![Span::raw(fmt_duration(s.age))], theme),
        kv(
            "Idle",
            w,
            {
                let mut v = vec![Span::styled(
                    format!("{}  ", idle_label(&s)),
                    theme.level(lvl),
                )];
                v.extend(gauge(&s, 20, theme).spans);
                if let Some(r) = s.remaining {
                    v.push(Span::raw(format!("  cut in {}", fmt_secs(r))));
                }
                v
            },
            theme,
        ),
        flow("→ origin", &s.to_origin, Direction::ClientToOrigin),
        flow("→ client", &s.to_client, Direction::OriginToClient),
    ];
    let [info_area, frames_area] =
        Layout::vertical([Constraint::Length(7), Constraint::Min(0)]).areas(inner);
    frame.render_widget(Paragraph::new(info), info_area);

    let mut frames = stats.recent_frames();
    frames.reverse();
    if frames.is_empty() {
        frame.render_widget(
            Paragraph::new(Span::styled("No frames yet.", theme.dim())),
            frames_area,
        );
        return;
    }
    let height = usize::from(frames_area.height.saturating_sub(1));
    let window = detail.cursor.window(frames.len(), height);
    let rows: Vec<Row> = frames[window.clone()]
        .iter()
        .map(|f| {
            Row::new(vec![
                format!("+{:>8.3} s", f.at.as_secs_f64()),
                f.direction.arrow().to_string(),
                f.kind.as_str().to_string(),
                format!("{:>9}", fmt_bytes(f.len)),
            ])
        })
        .collect();
    let table = Table::new(
        rows,
        [
            Constraint::Length(12),
            Constraint::Length(9),
            Constraint::Length(7),
            Constraint::Length(9),
        ],
    )
    .header(Row::new(["At", "Direction", "Kind", "  Payload"]).style(theme.table_header()))
    .column_spacing(2)
    .row_highlight_style(row_highlight(focused, theme));
    let mut state =
        TableState::default().with_selected(Some(detail.cursor.index.saturating_sub(window.start)));
    frame.render_stateful_widget(table, frames_area, &mut state);
}
