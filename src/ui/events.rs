//! Event Log: opened / closed / refused, with filters, and close-reason
//! counts per domain.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table, TableState};

use crate::app::App;
use crate::config::DomainName;
use crate::relay::{CloseCause, CloseInfo, RelayEvent};

use super::WIDE;
use super::theme::Theme;
use super::widgets::{block, fmt_wall, row_highlight, text_input};

pub fn render(frame: &mut Frame, area: Rect, app: &App, focused: bool, theme: &Theme) {
    let events = app.log.filtered();
    let title = format!(" Event Log · {} of {} ", events.len(), app.log.len());
    let outer = block(title, focused, theme);
    let inner = outer.inner(area);
    frame.render_widget(outer, area);

    let wide = area.width >= WIDE + 20;
    let reasons = app.log.reason_counts();
    let reason_lines: usize = reasons
        .iter()
        .map(|(d, r)| 1 + r.len() + usize::from(app.recent_on(d).cut_while_alive > 0))
        .sum();
    let (log_area, counts_area) = if wide {
        let [l, c] = Layout::horizontal([Constraint::Min(0), Constraint::Length(34)]).areas(inner);
        (l, c)
    } else {
        let h = u16::try_from(reason_lines + 2)
            .unwrap_or(8)
            .min(inner.height / 3);
        let [l, c] = Layout::vertical([Constraint::Min(0), Constraint::Length(h)]).areas(inner);
        (l, c)
    };

    let [filter_area, table_area] =
        Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(log_area);
    let domain = app.log.domain.as_deref().unwrap_or("all");
    let spans = vec![
        Span::styled("f", theme.key()),
        Span::raw(format!(" kind: {}  ", app.log.kind.label())),
        Span::styled("d", theme.key()),
        Span::raw(format!(" domain: {domain}  ")),
        Span::styled("/", theme.key()),
        Span::raw(" "),
    ];
    let prefix: u16 = spans
        .iter()
        .map(|s| u16::try_from(s.width()).unwrap_or(0))
        .sum();
    let [label, input] =
        Layout::horizontal([Constraint::Length(prefix), Constraint::Min(0)]).areas(filter_area);
    frame.render_widget(Paragraph::new(Line::from(spans)), label);
    if app.log.editing || !app.log.text.value().is_empty() {
        text_input(
            frame,
            input,
            &app.log.text,
            app.log.editing && focused,
            theme,
        );
    } else {
        frame.render_widget(Paragraph::new(Span::styled("text", theme.dim())), input);
    }

    if events.is_empty() {
        let msg = if app.log.is_empty() {
            "No events yet: sessions opening, closing and refused connections appear here."
        } else {
            "No event matches the filters (c clears them)."
        };
        frame.render_widget(
            Paragraph::new(Span::styled(msg, theme.dim()))
                .wrap(ratatui::widgets::Wrap { trim: true }),
            table_area,
        );
    } else {
        // The selected event in full, wrapped: a narrow table cuts details.
        let (table_area, detail_area) = if table_area.height > 8 {
            let [t, d] =
                Layout::vertical([Constraint::Min(0), Constraint::Length(3)]).areas(table_area);
            (t, Some(d))
        } else {
            (table_area, None)
        };
        if let (Some(area), Some(event)) = (detail_area, events.get(app.log.cursor.index)) {
            let mut text = format!("{} {event}", fmt_wall(event.at()));
            if let RelayEvent::Closed { id, .. } = event
                && app.was_cut_while_alive(*id)
            {
                text.push_str(" · cut while alive: the client came back within 10 s");
            }
            frame.render_widget(
                Paragraph::new(text)
                    .wrap(ratatui::widgets::Wrap { trim: true })
                    .block(
                        ratatui::widgets::Block::default()
                            .borders(ratatui::widgets::Borders::TOP)
                            .border_style(theme.dim())
                            .title(Span::styled(" Selected ", theme.dim())),
                    ),
                area,
            );
        }
        let height = usize::from(table_area.height.saturating_sub(1));
        let window = app.log.cursor.window(events.len(), height);
        let show_peer = table_area.width >= 90;
        let rows: Vec<Row> = events[window.clone()]
            .iter()
            .map(|e| event_row(e, app, show_peer, theme))
            .collect();
        let mut header = vec!["Time (UTC)", "Event", "Domain"];
        let mut widths = vec![
            Constraint::Length(10),
            Constraint::Length(7),
            Constraint::Length(16),
        ];
        if show_peer {
            header.push("Peer");
            widths.push(Constraint::Length(21));
        }
        header.push("Details");
        widths.push(Constraint::Fill(1));
        let table = Table::new(rows, widths)
            .header(Row::new(header).style(theme.table_header()))
            .column_spacing(1)
            .row_highlight_style(row_highlight(focused && !app.log.editing, theme));
        let mut state = TableState::default()
            .with_selected(Some(app.log.cursor.index.saturating_sub(window.start)));
        frame.render_stateful_widget(table, table_area, &mut state);
    }

    let mut lines = Vec::new();
    for (domain, counts) in &reasons {
        lines.push(Line::from(Span::styled(domain.to_string(), theme.value())));
        for (reason, n) in counts.iter() {
            lines.push(Line::from(format!("  {reason:<22}{n:>6}")));
            let alive = app.recent_on(domain).cut_while_alive;
            if *reason == CloseCause::IDLE_LABEL && alive > 0 {
                lines.push(Line::from(Span::styled(
                    format!("  ↳ cut while alive (10m){alive:>5}"),
                    theme.warn(),
                )));
            }
        }
    }
    if lines.is_empty() {
        lines.push(Line::from(Span::styled("No closes yet.", theme.dim())));
    }
    frame.render_widget(
        Paragraph::new(lines).block(block(" Close reasons ", false, theme)),
        counts_area,
    );
}

fn close_codes(to_client: &Option<CloseInfo>, to_origin: &Option<CloseInfo>) -> String {
    let code = |c: &Option<CloseInfo>| c.as_ref().map_or("—".to_string(), |c| c.code.to_string());
    format!("client←{} origin←{}", code(to_client), code(to_origin))
}

fn event_row<'a>(e: &'a RelayEvent, app: &App, show_peer: bool, theme: &Theme) -> Row<'a> {
    let (kind, style, domain, peer, details) = match e {
        RelayEvent::Opened {
            domain,
            client,
            origin,
            path,
            subprotocol,
            id,
            ..
        } => (
            "opened",
            theme.good(),
            domain.to_string(),
            client.to_string(),
            format!(
                "#{id} {path} → {origin}{}",
                subprotocol
                    .as_ref()
                    .map_or(String::new(), |p| format!(" ({p})"))
            ),
        ),
        RelayEvent::Closed {
            id,
            domain,
            client,
            cause,
            to_client,
            to_origin,
            idle,
            ..
        } => (
            "closed",
            if matches!(cause, crate::relay::CloseCause::IdleTimeout { .. }) {
                theme.warn()
            } else {
                theme.base()
            },
            domain.to_string(),
            client.to_string(),
            // Cause and idle time first: they are what a narrow terminal keeps.
            format!(
                "#{id} {}{cause} · idle {:.1} s · {}",
                if app.was_cut_while_alive(*id) {
                    "cut while alive: "
                } else {
                    ""
                },
                idle.as_secs_f64(),
                close_codes(to_client, to_origin),
            ),
        ),
        RelayEvent::Refused {
            client,
            domain,
            status,
            reason,
            ..
        } => (
            "refused",
            theme.error(),
            domain
                .as_ref()
                .map_or_else(|| "—".to_string(), DomainName::to_string),
            client.to_string(),
            format!(
                "{} {reason}",
                status.map_or("dropped".to_string(), |s| s.to_string())
            ),
        ),
        RelayEvent::ConfigApplied { detail, .. } => (
            "config",
            theme.base(),
            "—".to_string(),
            String::new(),
            format!("applied: {detail}"),
        ),
        RelayEvent::ConfigRejected { error, .. } => (
            "config",
            theme.error(),
            "—".to_string(),
            String::new(),
            format!("rejected: {error}"),
        ),
        RelayEvent::ControlRefused { uid, reason, .. } => (
            "control",
            theme.error(),
            "—".to_string(),
            String::new(),
            format!("control socket refused uid {uid}: {reason}"),
        ),
        RelayEvent::AcceptFailed { error, .. } => (
            "accept",
            theme.error(),
            "—".to_string(),
            String::new(),
            format!("accept failed: {error}"),
        ),
    };
    let details = if show_peer || peer.is_empty() {
        details
    } else {
        format!("{details} · {peer}")
    };
    let mut cells: Vec<Cell> = vec![
        fmt_wall(e.at()).into(),
        Span::styled(kind, style).into(),
        domain.into(),
    ];
    if show_peer {
        cells.push(peer.into());
    }
    cells.push(details.into());
    Row::new(cells)
}
