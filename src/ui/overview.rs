//! Overview: totals per domain and per-minute sparklines.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Row, Sparkline, Table, TableState};

use crate::app::App;
use crate::config::effective_timeout;

use super::theme::Theme;
use super::widgets::{block, row_highlight};

pub fn render(frame: &mut Frame, area: Rect, app: &App, focused: bool, theme: &Theme) {
    let outer = block(" Overview ", focused, theme);
    let inner = outer.inner(area);
    frame.render_widget(outer, area);

    let rows_needed = u16::try_from(app.config.domains.len()).unwrap_or(u16::MAX);
    let [summary, table_area, spark_area] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Max(rows_needed.saturating_add(1)),
        Constraint::Min(0),
    ])
    .areas(inner);

    let closes: u64 = app
        .config
        .domains
        .iter()
        .map(|d| app.log.totals(&d.name).closed)
        .sum();
    let idle: u64 = app
        .config
        .domains
        .iter()
        .map(|d| app.log.totals(&d.name).idle_closes)
        .sum();
    let relay = app
        .settings
        .relay_addr
        .map_or_else(|| "not running".to_string(), |a| a.to_string());
    let first = if app.is_cloud() {
        Line::from(Span::styled(
            "Tencent Cloud account: sessions are visible only through a relay",
            theme.dim(),
        ))
    } else {
        Line::from(vec![
            Span::styled("Relay ", theme.label()),
            Span::styled(relay, theme.value()),
            Span::styled("  Live ", theme.label()),
            Span::styled(app.live.len().to_string(), theme.value()),
            Span::styled("  Closed ", theme.label()),
            Span::styled(closes.to_string(), theme.value()),
            Span::styled("  Idle cuts ", theme.label()),
            Span::styled(idle.to_string(), theme.value()),
        ])
    };
    frame.render_widget(
        Paragraph::new(vec![
            first,
            Line::from(Span::styled(
                format!(
                    "Domains ({}) · Cut alive: back within 10 s, last 10 min",
                    app.config.domains.len()
                ),
                theme.dim(),
            )),
        ]),
        summary,
    );

    // Narrow terminals drop the columns the Event Log also answers (the
    // summary line above still has the total of closes).
    let wide = inner.width >= 80;
    let narrow = inner.width < 64;
    // Beside the menu on the smallest terminal: what the console is about.
    let tiny = inner.width < 50;
    // The Domain list has the status; here the cuts need the room.
    let status = !narrow;
    let mut header = vec!["Domain"];
    if status {
        header.push("Status");
    }
    header.extend(["WebSocket", "Live"]);
    if wide {
        header.push("Opened");
    }
    if !narrow {
        header.push("Closed");
    }
    if !tiny {
        header.extend(["Idle cuts", "Cut alive"]);
    }
    if wide {
        header.push("Refused");
    }
    let header = Row::new(header).style(theme.table_header());
    let rows: Vec<Row> = app
        .config
        .domains
        .iter()
        .map(|d| {
            let t = app.log.totals(&d.name);
            let mut cells = vec![d.name.to_string()];
            if status {
                cells.push(d.status.as_str().to_string());
            }
            cells.extend([
                effective_timeout(d).column_label(),
                format!("{:>4}", app.live_on(&d.name)),
            ]);
            if wide {
                cells.push(format!("{:>6}", t.opened));
            }
            if !narrow {
                cells.push(format!("{:>6}", t.closed));
            }
            if !tiny {
                cells.push(format!("{:>9}", t.idle_closes));
                cells.push(format!("{:>9}", app.recent_on(&d.name).cut_while_alive));
            }
            if wide {
                cells.push(format!("{:>7}", t.refused));
            }
            Row::new(cells)
        })
        .collect();
    let mut widths = vec![Constraint::Fill(1)];
    if status {
        widths.push(Constraint::Length(7));
    }
    widths.extend([Constraint::Length(13), Constraint::Length(4)]);
    if wide {
        widths.push(Constraint::Length(6));
    }
    if !narrow {
        widths.push(Constraint::Length(6));
    }
    if !tiny {
        widths.extend([Constraint::Length(9), Constraint::Length(9)]);
    }
    if wide {
        widths.push(Constraint::Length(7));
    }
    let table = Table::new(rows, widths)
        .header(header)
        .column_spacing(1)
        .row_highlight_style(row_highlight(focused, theme));
    let mut state = TableState::default().with_selected(Some(app.overview.index));
    frame.render_stateful_widget(table, table_area, &mut state);

    if spark_area.height < 3 {
        return;
    }
    let side_by_side = spark_area.width >= 90;
    let [a, b] = if side_by_side {
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)])
            .areas(spark_area)
    } else {
        Layout::vertical([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(spark_area)
    };
    let minutes = usize::from(a.width.saturating_sub(2).max(1));
    let history = app.log.minutes(app.clock.wall, minutes);
    let active: Vec<u64> = history.iter().map(|m| m.active).collect();
    let closes: Vec<u64> = history.iter().map(|m| m.closes).collect();
    let max_active = active.iter().copied().max().unwrap_or(0);
    let max_closes = closes.iter().copied().max().unwrap_or(0);
    frame.render_widget(
        Sparkline::default()
            .block(block(
                format!(" Active sessions / min · peak {max_active} "),
                false,
                theme,
            ))
            .data(&active)
            .style(theme.sparkline(false)),
        a,
    );
    frame.render_widget(
        Sparkline::default()
            .block(block(
                format!(" Closes / min · peak {max_closes} "),
                false,
                theme,
            ))
            .data(&closes)
            .style(theme.sparkline(true)),
        b,
    );
}
