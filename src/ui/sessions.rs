//! Live Sessions, and a session's recent frames. Only the rows on screen
//! are built, so ten thousand sessions cost no more than twenty.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table, TableState};

use crate::app::{App, ListCursor, SessionDetail, SessionPage};
use crate::config::DomainName;
use std::time::Duration;

use crate::relay::heartbeat::{MIN_SAMPLES, Rhythm};
use crate::relay::{CloseInfo, Direction, FlowSnapshot, RelayEvent, SessionId, SessionSnapshot};

use super::theme::{Level, Theme};
use super::widgets::{
    block, fmt_bytes, fmt_duration, fmt_secs, fmt_secs_left, gauge, idle_label, kv, level,
    row_highlight,
};

pub fn render(frame: &mut Frame, area: Rect, app: &App, focused: bool, theme: &Theme) {
    if let Some(detail) = &app.sessions.detail {
        render_detail(frame, area, app, detail, focused, theme);
        return;
    }
    let count = match app.relay.loading() {
        Some(total) => format!("loading {} of {total}", app.live.len()),
        None => app.live.len().to_string(),
    };
    let title = format!(
        " Live Sessions · {count} · sorted by {} ",
        app.sessions.sort.label()
    );
    let outer = block(title, focused, theme);
    let inner = outer.inner(area);
    frame.render_widget(outer, area);
    session_table(frame, inner, app, None, focused, theme);
}

/// A table of sessions: every live session (`domain` = `None`, the Live
/// Sessions screen) or one domain's (its Manage page's Sessions tab).
pub fn session_table(
    frame: &mut Frame,
    area: Rect,
    app: &App,
    domain: Option<&DomainName>,
    focused: bool,
    theme: &Theme,
) {
    let default_cursor = ListCursor::default();
    let (sessions, cursor): (Vec<&SessionSnapshot>, &ListCursor) = match domain {
        None => (app.live.iter().collect(), &app.sessions.cursor),
        Some(d) => (
            app.sessions_of(d),
            app.domains
                .manage
                .as_ref()
                .map_or(&default_cursor, |m| &m.cursor),
        ),
    };
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
    let show_domain = domain.is_none();
    // Without the domain column its cells go to the others.
    let fit = Columns::fit(area.width + if show_domain { 0 } else { Columns::DOMAIN + 1 });
    let columns = fit.shown(show_domain);
    let height = usize::from(area.height.saturating_sub(1));
    let window = cursor.window(sessions.len(), height);
    let rows: Vec<Row> = sessions[window.clone()]
        .iter()
        .map(|s| Row::new(columns.iter().map(|c| c.cell(s, app, &fit, theme))))
        .collect();
    let header = Row::new(columns.iter().map(|c| c.header())).style(theme.table_header());
    let widths: Vec<Constraint> = columns.iter().map(|c| c.width(&fit)).collect();
    let table = Table::new(rows, widths)
        .header(header)
        .column_spacing(1)
        .row_highlight_style(row_highlight(focused, theme));
    let mut state =
        TableState::default().with_selected(Some(cursor.index.saturating_sub(window.start)));
    frame.render_stateful_widget(table, area, &mut state);
}

const BEAT_WIDTH: u16 = 6;

/// A column of the session table: it owns its header, its width and how a
/// session fills its cell (trippy's `ColumnType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Column {
    Id,
    Domain,
    Client,
    Origin,
    Age,
    Beat,
    Idle,
    Deadline,
    ToOrigin,
    ToClient,
    Messages,
    Bytes,
    Last,
}

impl Column {
    fn header(self) -> &'static str {
        match self {
            Self::Id => "ID",
            Self::Domain => "Domain",
            Self::Client => "Client",
            Self::Origin => "Origin",
            Self::Age => "      Age",
            Self::Beat => "  Beat",
            Self::Idle => "   Idle / limit",
            Self::Deadline => "Deadline",
            Self::ToOrigin => "→origin msgs B",
            Self::ToClient => "→client msgs B",
            Self::Messages => "msgs ↑/↓",
            Self::Bytes => "  bytes ↑/↓",
            Self::Last => "Last",
        }
    }

    fn width(self, fit: &Columns) -> Constraint {
        Constraint::Length(match self {
            Self::Domain => return Constraint::Fill(1),
            Self::Id => 6,
            Self::Client if fit.origin => 21,
            Self::Client | Self::Origin | Self::Idle => 15,
            Self::Age => 9,
            Self::Beat => BEAT_WIDTH,
            Self::Deadline => fit.gauge,
            Self::ToOrigin | Self::ToClient => 14,
            Self::Messages => 9,
            Self::Bytes => 13,
            Self::Last => 8,
        })
    }

    fn cell(self, s: &SessionSnapshot, app: &App, fit: &Columns, theme: &Theme) -> Cell<'static> {
        let flow = |f: &FlowSnapshot| format!("{:>5} {:>8}", f.messages, fmt_bytes(f.bytes));
        match self {
            Self::Id => format!("#{}", s.id).into(),
            Self::Domain => s.domain.to_string().into(),
            Self::Client => s.client.to_string().into(),
            Self::Origin => s.origin.to_string().into(),
            Self::Age => format!("{:>9}", fmt_duration(s.age)).into(),
            Self::Beat => beat_cell(app.rhythm(s.id), s, theme).into(),
            Self::Idle => idle_cell(s, theme).into(),
            Self::Deadline => gauge(s, fit.gauge, theme).into(),
            Self::ToOrigin => flow(&s.to_origin).into(),
            Self::ToClient => flow(&s.to_client).into(),
            Self::Messages => {
                format!("{:>4}/{:<4}", s.to_origin.messages, s.to_client.messages).into()
            }
            Self::Bytes => format!(
                "{:>6}/{:<6}",
                fmt_bytes(s.to_origin.bytes),
                fmt_bytes(s.to_client.bytes)
            )
            .into(),
            Self::Last => last_frame(s).into(),
        }
    }
}

/// Idle time and limit; near the deadline with a `!`, for eyes (and
/// terminals) that miss colour.
fn idle_cell(s: &SessionSnapshot, theme: &Theme) -> Line<'static> {
    let lvl = level(s);
    let (text, style) = if lvl == Level::Danger {
        (format!("!{}", idle_label(s)), theme.level(lvl))
    } else {
        (idle_label(s), theme.base())
    };
    Line::from(Span::styled(format!("{text:>15}"), style))
}

/// Which columns the session table shows at a width. Always: ID, domain
/// (18 cells or more), idle and its gauge; then, as room allows, in this
/// order: beat, last frame, messages (80 columns have these), client, age,
/// bytes; and with plenty of room every column, each direction apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Columns {
    beat: bool,
    last: bool,
    messages: bool,
    client: bool,
    origin: bool,
    age: bool,
    bytes: bool,
    split_flows: bool,
    gauge: u16,
}

impl Columns {
    /// ID, 18 cells of domain, idle, gauge, and the spacing between them.
    const BASE: u16 = 50;
    /// The narrowest domain column.
    const DOMAIN: u16 = 18;

    fn fit(width: u16) -> Self {
        if width >= 140 {
            return Self {
                beat: true,
                last: true,
                messages: true,
                client: true,
                origin: true,
                age: true,
                // Each direction's bytes are in its own column.
                bytes: false,
                split_flows: true,
                gauge: 10,
            };
        }
        let mut room = width.saturating_sub(Self::BASE);
        // Each column with its spacing, in order of priority.
        let mut take = |w: u16| {
            let fits = room >= w;
            if fits {
                room -= w;
            }
            fits
        };
        let beat = take(BEAT_WIDTH + 1);
        let last = take(9);
        let messages = take(10);
        let client = take(16);
        let age = take(10);
        let bytes = take(14);
        let wide_gauge = take(2);
        Self {
            beat,
            last,
            messages,
            client,
            origin: false,
            age,
            bytes: bytes && messages,
            split_flows: false,
            gauge: if wide_gauge { 10 } else { 8 },
        }
    }

    /// The columns shown, left to right.
    fn shown(&self, domain: bool) -> Vec<Column> {
        [
            (true, Column::Id),
            (domain, Column::Domain),
            (self.client, Column::Client),
            (self.origin, Column::Origin),
            (self.age, Column::Age),
            (self.beat, Column::Beat),
            (true, Column::Idle),
            (true, Column::Deadline),
            (self.split_flows, Column::ToOrigin),
            (self.split_flows, Column::ToClient),
            (self.messages && !self.split_flows, Column::Messages),
            (self.bytes, Column::Bytes),
            (self.last, Column::Last),
        ]
        .into_iter()
        .filter_map(|(shown, column)| shown.then_some(column))
        .collect()
    }
}

/// The observed heartbeat (median gap of the steadier direction), with a
/// `!` when it is no shorter than the idle limit: such a session is cut
/// between beats unless something else keeps it alive.
fn beat_cell(rhythm: Option<Rhythm>, s: &SessionSnapshot, theme: &Theme) -> Line<'static> {
    let Some(rhythm) = rhythm else {
        return Line::default();
    };
    let Some(beat) = rhythm.heartbeat() else {
        return Line::from(Span::styled(format!("{:>6}", "—"), theme.dim()));
    };
    let text = fmt_gap(beat.median);
    if rhythm.exceeds(s.timeout) {
        Line::from(Span::styled(
            format!("{:>6}", format!("{text}!")),
            theme.warn(),
        ))
    } else {
        Line::from(format!("{text:>5} "))
    }
}

/// A gap between messages: `2.5 s`, `5.0 s`, `25 s`.
fn fmt_gap(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 10.0 {
        format!("{s:.1} s")
    } else {
        format!("{s:.0} s")
    }
}

/// What the session's rhythm means for its idle limit.
fn heartbeat_line(rhythm: &Rhythm, s: &SessionSnapshot, theme: &Theme) -> Vec<Span<'static>> {
    let Some(beat) = rhythm.heartbeat() else {
        return vec![Span::styled(
            format!("none seen yet (needs {MIN_SAMPLES} gaps between messages one way)"),
            theme.dim(),
        )];
    };
    let observed = format!("~{} (max {})", fmt_gap(beat.median), fmt_gap(beat.max));
    match s.timeout {
        Some(limit) if rhythm.exceeds(s.timeout) => vec![
            Span::styled(format!("{observed}!"), theme.warn()),
            Span::raw(format!(
                "  ≥ {} limit: cut between beats unless pinged",
                fmt_secs(limit)
            )),
        ],
        Some(limit) => vec![Span::raw(format!(
            "{observed}  under the {} limit",
            fmt_secs(limit)
        ))],
        None => vec![Span::raw(format!("{observed}  no idle limit"))],
    }
}

fn last_frame(s: &SessionSnapshot) -> String {
    match s.last_frame {
        None => "—".to_string(),
        Some((Direction::ClientToOrigin, k)) => format!("↑ {}", k.as_str()),
        Some((Direction::OriginToClient, k)) => format!("↓ {}", k.as_str()),
    }
}

/// Width of the labels on a session's page, and on an ended session's.
const DETAIL_LABEL_WIDTH: usize = 11;
const ENDED_LABEL_WIDTH: usize = 14;

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
    let Some(page) = app.page(detail.id) else {
        frame.render_widget(Paragraph::new(ended_lines(app, detail.id, theme)), inner);
        return;
    };
    let [info_area, frames_area] =
        Layout::vertical([Constraint::Length(8), Constraint::Min(0)]).areas(inner);
    frame.render_widget(Paragraph::new(page_lines(page, theme)), info_area);
    recent_frames(frame, frames_area, page, detail, focused, theme);
}

/// A session that has ended: how, from its Closed event.
fn ended_lines(app: &App, id: SessionId, theme: &Theme) -> Vec<Line<'static>> {
    let mut lines = vec![Line::from(Span::styled(
        format!("Session #{id} has ended."),
        theme.value(),
    ))];
    if let Some(RelayEvent::Closed {
        cause,
        to_client,
        to_origin,
        idle,
        duration,
        ..
    }) = app.log.closed_event(id)
    {
        let close = |c: &Option<CloseInfo>| {
            c.as_ref()
                .map_or_else(|| "none".to_string(), |c| c.to_string())
        };
        let row = |label, text: String| kv(label, ENDED_LABEL_WIDTH, vec![Span::raw(text)], theme);
        lines.push(Line::default());
        lines.push(row("Reason", cause.to_string()));
        lines.push(row("To client", close(to_client)));
        lines.push(row("To origin", close(to_origin)));
        lines.push(row("Idle at close", fmt_duration(*idle)));
        lines.push(row("Lasted", fmt_duration(*duration)));
    }
    lines.push(Line::default());
    lines.push(Line::from(Span::styled("Esc: back", theme.dim())));
    lines
}

/// A live session's counters, idle deadline and rhythm.
fn page_lines(page: &SessionPage, theme: &Theme) -> Vec<Line<'static>> {
    let s = &page.snapshot;
    let w = DETAIL_LABEL_WIDTH;
    let gap = |d: Direction| {
        let g = match d {
            Direction::ClientToOrigin => page.rhythm.client_to_origin,
            Direction::OriginToClient => page.rhythm.origin_to_client,
        };
        match (g.median, g.max) {
            (Some(med), Some(max)) => format!(
                "gaps median {}, max {} ({} {})",
                fmt_gap(med),
                fmt_gap(max),
                g.samples,
                if g.samples == 1 { "sample" } else { "samples" }
            ),
            _ => "no gap yet".to_string(),
        }
    };
    let flow = |label, f: &FlowSnapshot, d| {
        let text = format!("{} msgs, {} · {}", f.messages, fmt_bytes(f.bytes), gap(d));
        kv(label, w, vec![Span::raw(text)], theme)
    };
    let mut idle = vec![Span::styled(
        format!("{}  ", idle_label(s)),
        theme.level(level(s)),
    )];
    idle.extend(gauge(s, 20, theme).spans);
    if let Some(r) = s.remaining {
        idle.push(Span::raw(format!("  cut in {}", fmt_secs_left(r))));
    }
    vec![
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
        kv("Idle", w, idle, theme),
        flow("→ origin", &s.to_origin, Direction::ClientToOrigin),
        flow("→ client", &s.to_client, Direction::OriginToClient),
        kv(
            "Heartbeat",
            w,
            heartbeat_line(&page.rhythm, s, theme),
            theme,
        ),
    ]
}

/// The session's recent frames, newest first.
fn recent_frames(
    frame: &mut Frame,
    area: Rect,
    page: &SessionPage,
    detail: &SessionDetail,
    focused: bool,
    theme: &Theme,
) {
    let mut frames = page.recent.clone();
    frames.reverse();
    if frames.is_empty() {
        frame.render_widget(
            Paragraph::new(Span::styled("No frames yet.", theme.dim())),
            area,
        );
        return;
    }
    let height = usize::from(area.height.saturating_sub(1));
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
    frame.render_stateful_widget(table, area, &mut state);
}
