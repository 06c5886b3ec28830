//! A domain's Manage page: Basic Information · Origin Configuration ·
//! Advanced Configuration (the "WebSocket timeout" card) · Sessions.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Tabs, Wrap};

use strum::IntoEnumIterator;

use crate::app::Command;
use crate::app::advice::fmt_secs;
use crate::app::keymap::{self, Context};
use crate::app::{App, ManageTab};
use crate::config::{
    Domain, LIMITATION_TEXT, RECOMMENDATION_TEXT, Status, TimeoutSource, effective_timeout,
};

use super::sessions::{render_detail, session_table};
use super::theme::Theme;
use super::widgets::{block, key_hints, kv, switch_spans};

pub fn render(frame: &mut Frame, area: Rect, app: &App, focused: bool, theme: &Theme) {
    let (Some(m), Some(domain)) = (app.domains.manage.as_ref(), app.managed_domain()) else {
        return;
    };
    if let Some(detail) = &m.detail {
        render_detail(frame, area, app, detail, focused, theme);
        return;
    }
    let outer = block(
        format!(" Domain Management › {} ", domain.name),
        focused,
        theme,
    );
    let inner = outer.inner(area);
    frame.render_widget(outer, area);
    let [tabs_area, _, body] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Min(0),
    ])
    .areas(inner);
    // The web console's tab names in full whenever they fit (they do in
    // 80 columns once the menu steps aside); short ones only when they don't.
    let full = tabs_width(ManageTab::title) <= usize::from(tabs_area.width);
    let titles = ManageTab::iter().map(|t| if full { t.title() } else { t.short_title() });
    frame.render_widget(
        Tabs::new(titles)
            .select(m.tab.index())
            .style(theme.base())
            .highlight_style(theme.tab_active())
            .divider(TAB_DIVIDER),
        tabs_area,
    );
    if app.is_cloud() {
        super::cloud::tab(frame, body, app, domain, m.tab, theme);
        return;
    }
    match m.tab {
        ManageTab::Basic => basic(frame, body, app, domain, theme),
        ManageTab::Origin => origin(frame, body, domain, theme),
        ManageTab::Advanced => advanced(frame, body, app, domain, theme),
        ManageTab::Sessions => {
            let [summary, table] =
                Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(body);
            frame.render_widget(Paragraph::new(recent_line(app, domain, theme)), summary);
            session_table(frame, table, app, Some(&domain.name), focused, theme);
        }
    }
}

/// The label column of the Basic Information and Origin Configuration tabs.
const W: usize = 19;

const TAB_DIVIDER: &str = "·";

/// Width of the tab bar with these titles: each padded by a space on both
/// sides (ratatui's default), dividers between them.
fn tabs_width(title: fn(ManageTab) -> &'static str) -> usize {
    let titles: usize = ManageTab::iter()
        .map(|t| title(t).chars().count() + 2)
        .sum();
    titles + (ManageTab::iter().count() - 1) * TAB_DIVIDER.chars().count()
}

fn basic(frame: &mut Frame, area: Rect, app: &App, d: &Domain, theme: &Theme) {
    let status = match d.status {
        Status::Online => Span::styled("online", theme.good()),
        Status::Offline => Span::styled("offline (new clients get 503)", theme.warn()),
    };
    let t = app.log.totals(&d.name);
    let ws = effective_timeout(d);
    let mut status = vec![status, Span::raw("   ")];
    status.extend(key_hints(
        keymap::bindings_for(Context::Manage(ManageTab::Basic), Command::ToggleOnline),
        "  ",
        theme,
    ));
    let mut lines = vec![
        kv(
            "Domain",
            W,
            vec![Span::styled(d.name.to_string(), theme.value())],
            theme,
        ),
        kv("CNAME", W, vec![Span::raw(d.cname())], theme),
        kv("Status", W, status, theme),
        kv(
            "Acceleration type",
            W,
            vec![Span::raw(d.acceleration.label())],
            theme,
        ),
        kv("Area", W, vec![Span::raw(d.area.as_str())], theme),
        kv("WebSocket", W, vec![Span::raw(ws.column_label())], theme),
        kv(
            "",
            W,
            vec![Span::styled(ws.explanation(), theme.dim())],
            theme,
        ),
        kv(
            "Live sessions",
            W,
            vec![Span::raw(app.live_on(&d.name).to_string())],
            theme,
        ),
        kv(
            "Since start",
            W,
            vec![Span::raw(format!(
                "{} opened, {} closed ({} idle), {} refused",
                t.opened, t.closed, t.idle_closes, t.refused
            ))],
            theme,
        ),
        kv("Last 10 min", W, recent_spans(app, d, theme), theme),
    ];
    for (i, spans) in super::certificate::lines(app.certificate(&d.name), theme)
        .into_iter()
        .enumerate()
    {
        lines.push(kv(if i == 0 { "Certificate" } else { "" }, W, spans, theme));
    }
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), area);
}

/// The domain's last 10 minutes: idle cuts, and cuts of live clients.
fn recent_spans(app: &App, d: &Domain, theme: &Theme) -> Vec<Span<'static>> {
    let c = app.recent_on(&d.name);
    let alive = format!("{} cut while alive", c.cut_while_alive);
    vec![
        Span::raw(format!("{} ended, {} idle cuts, ", c.ended, c.idle_cuts)),
        if c.cut_while_alive > 0 {
            Span::styled(alive, theme.warn())
        } else {
            Span::raw(alive)
        },
        Span::styled(" (back within 10 s)", theme.dim()),
    ]
}

fn recent_line(app: &App, d: &Domain, theme: &Theme) -> Line<'static> {
    let mut spans = vec![Span::styled("Last 10 min  ", theme.label())];
    spans.extend(recent_spans(app, d, theme));
    Line::from(spans)
}

fn origin(frame: &mut Frame, area: Rect, d: &Domain, theme: &Theme) {
    let mut lines = vec![kv(
        "Origins",
        W,
        vec![Span::styled(
            format!(
                "{} (picked by weight, next on connect failure)",
                d.origins.len()
            ),
            theme.dim(),
        )],
        theme,
    )];
    for o in &d.origins {
        lines.push(kv(
            "",
            W,
            vec![
                Span::styled(o.authority(), theme.value()),
                Span::raw(format!("  weight {}", o.weight)),
            ],
            theme,
        ));
    }
    let server_name = match &d.server_name {
        Some(s) => Span::raw(s.clone()),
        None => Span::raw(format!("{} (the domain name)", d.name)),
    };
    lines.push(kv("Host to origin", W, vec![server_name], theme));
    let protocol = match d.origin_protocol {
        crate::config::OriginProtocol::Http => "http — ws:// to the origin",
        crate::config::OriginProtocol::Https => "https — wss:// to the origin",
        crate::config::OriginProtocol::Follow => "follow — the client's scheme (ws://)",
    };
    lines.push(kv("Origin protocol", W, vec![Span::raw(protocol)], theme));
    lines.push(Line::default());
    lines.push(Line::from(vec![
        Span::styled("e", theme.key()),
        Span::raw(" edit origins, server name and protocol"),
    ]));
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), area);
}

/// The "WebSocket timeout" card, as the web console shows it.
/// The label column of the WebSocket timeout card.
const CARD_LABEL_WIDTH: usize = 14;

fn advanced(frame: &mut Frame, area: Rect, app: &App, d: &Domain, theme: &Theme) {
    let card = area;
    let b = block(" WebSocket timeout ", false, theme);
    let inner = b.inner(card);
    frame.render_widget(b, card);
    let mut lines = if d.can_configure_websocket() {
        timeout_lines(app, d, theme)
    } else {
        limitation_lines(d, theme)
    };
    lines.extend(idle_rule_lines(app, d, theme));
    if d.can_configure_websocket() {
        // The card's buttons, on a line of their own at any width.
        let tab = Context::Manage(ManageTab::Advanced);
        let buttons = keymap::bindings_for(tab, Command::Edit)
            .chain(keymap::bindings_for(tab, Command::Toggle));
        lines.push(Line::default());
        lines.push(Line::from(key_hints(buttons, "   ", theme)));
    }
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), inner);
}

/// A domain that cannot configure WebSocket: why, and the limit it gets.
fn limitation_lines(d: &Domain, theme: &Theme) -> Vec<Line<'static>> {
    let ws = effective_timeout(d);
    vec![
        kv(
            "Acceleration",
            CARD_LABEL_WIDTH,
            vec![Span::raw(d.acceleration.label())],
            theme,
        ),
        Line::default(),
        Line::from(Span::styled(LIMITATION_TEXT, theme.warn())),
        Line::default(),
        kv(
            "In force",
            CARD_LABEL_WIDTH,
            vec![Span::raw(ws.explanation())],
            theme,
        ),
    ]
}

/// The switch, the timeout, the limit in force and the recommendation.
fn timeout_lines(app: &App, d: &Domain, theme: &Theme) -> Vec<Line<'static>> {
    let mut lines = timeout_setting_lines(d, theme);
    lines.push(Line::default());
    lines.extend(recommendation_lines(app, d, theme));
    lines.push(Line::from(Span::styled(RECOMMENDATION_TEXT, theme.dim())));
    lines.push(Line::default());
    lines
}

/// The switch, the timeout and the limit in force, with a warning when
/// there is no limit: the top of every WebSocket timeout card.
pub(super) fn timeout_setting_lines(d: &Domain, theme: &Theme) -> Vec<Line<'static>> {
    let ws = effective_timeout(d);
    let switch = switch_spans(d.websocket.switch.is_on(), theme);
    let timeout = match ws.source {
        TimeoutSource::NoLimit => Span::styled("0 s — no idle limit", theme.warn()),
        TimeoutSource::SwitchOff => Span::raw(format!(
            "{} s (not in force while the switch is off)",
            d.websocket.timeout
        )),
        _ => Span::styled(format!("{} s", d.websocket.timeout), theme.value()),
    };
    let mut lines = vec![
        kv("Switch", CARD_LABEL_WIDTH, switch, theme),
        kv("Timeout", CARD_LABEL_WIDTH, vec![timeout], theme),
        kv(
            "In force",
            CARD_LABEL_WIDTH,
            vec![Span::raw(ws.explanation())],
            theme,
        ),
    ];
    if ws.source == TimeoutSource::NoLimit {
        lines.push(Line::from(Span::styled(
            "⚠ No idle limit: dead peers are never dropped.",
            theme.warn(),
        )));
    }
    lines
}

/// What counts as activity, and how an idle session is ended.
fn idle_rule_lines(app: &App, d: &Domain, theme: &Theme) -> [Line<'static>; 2] {
    let activity = if d.websocket.ping_resets_idle {
        "any frame either way, ping/pong included"
    } else {
        "data frames only (ping-resets-idle = false)"
    };
    let close = match app.config.relay.idle_close {
        crate::config::IdleCloseMode::CloseFrame => "1001 \"idle timeout (N s)\" to both sides",
        crate::config::IdleCloseMode::Abort => "TCP dropped, no close frame (clients see 1006)",
    };
    [
        kv(
            "Activity",
            CARD_LABEL_WIDTH,
            vec![Span::styled(activity, theme.dim())],
            theme,
        ),
        kv(
            "Idle close",
            CARD_LABEL_WIDTH,
            vec![Span::styled(close, theme.dim())],
            theme,
        ),
    ]
}

/// Where advice waits for an attached console's first fetch of the
/// relay's evidence (a moment: a key asks the relay before the next frame).
pub(super) const EVIDENCE_PENDING: &str = "asking the relay for its last 10 minutes…";

/// The recommendation from the last 10 minutes (README, "Advice from evidence"): the value,
/// how it compares with the limit in force, the reason, the evidence.
fn recommendation_lines(app: &App, d: &Domain, theme: &Theme) -> Vec<Line<'static>> {
    let Some(rec) = app.recommendation(d) else {
        return vec![kv(
            "Recommended",
            CARD_LABEL_WIDTH,
            vec![Span::styled(EVIDENCE_PENDING, theme.dim())],
            theme,
        )];
    };
    let mut value = vec![Span::styled(
        match rec.recommended_timeout_secs {
            0 => "0 s — no idle limit".to_string(),
            n => format!("{n} s"),
        },
        theme.value(),
    )];
    let recommended = u64::from(rec.recommended_timeout_secs);
    match rec.current_limit_secs {
        Some(c) if c == recommended => value.push(Span::styled("  (in force)", theme.good())),
        Some(c) if c < recommended && rec.cut_while_alive > 0 => value.push(Span::styled(
            format!("  (above the {c} s in force, which cuts live clients)"),
            theme.warn(),
        )),
        _ => {}
    }
    let mut evidence = match rec.sessions_seen {
        1 => "1 session in 10 min".to_string(),
        n => format!("{n} sessions in 10 min"),
    };
    if let Some(h) = rec.heartbeat_secs {
        evidence.push_str(&format!(
            " · heartbeat ~{} s",
            fmt_secs(std::time::Duration::from_secs_f64(h))
        ));
    }
    let cut = Span::styled(
        format!(" · {} cut while alive", rec.cut_while_alive),
        if rec.cut_while_alive > 0 {
            theme.warn()
        } else {
            theme.dim()
        },
    );
    vec![
        kv("Recommended", CARD_LABEL_WIDTH, value, theme),
        Line::from(Span::styled(rec.reason, theme.dim())),
        kv(
            "Evidence",
            CARD_LABEL_WIDTH,
            vec![Span::styled(evidence, theme.dim()), cut],
            theme,
        ),
    ]
}
