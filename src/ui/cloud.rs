//! What the console draws differently on a Tencent Cloud account: the
//! loading line, the Manage tabs from the API's view of the domain, the
//! probe's measurement beside the configured timeout, and the note where
//! a relay would show sessions.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};

use crate::app::cloud::{NO_SESSIONS_TEXT, PROPAGATION_TEXT};
use crate::app::keymap::keys_for;
use crate::app::{App, CloudView, Command, LoadState, ManageTab, ProbeState};
use crate::cloud::{CloudDomain, service_type_label};
use crate::config::{Domain, RECOMMENDATION_TEXT, effective_timeout};

use super::theme::Theme;
use super::widgets::{block, kv};

const W: usize = 19;

/// `r` and the like as the keymap of the screen in view binds them.
fn key(app: &App, command: Command) -> String {
    keys_for(app.context_behind_help(), command).unwrap_or_default()
}

/// The line above the domain list: paging progress, then the outcome.
pub fn load_line(app: &App, view: &CloudView, theme: &Theme) -> Line<'static> {
    let reload = key(app, Command::Reload);
    match &view.load {
        LoadState::Starting => Line::from(Span::styled(
            "Loading domains from Tencent Cloud…",
            theme.dim(),
        )),
        LoadState::Loading(p) => Line::from(Span::styled(
            format!(
                "Loading domains from Tencent Cloud… {} of {}",
                p.loaded, p.total
            ),
            theme.dim(),
        )),
        LoadState::Loaded => Line::from(vec![
            Span::styled(
                format!("{} domains from {}", view.domains.len(), view.endpoint),
                theme.dim(),
            ),
            Span::styled(format!("   {reload}"), theme.key()),
            Span::styled(" reload", theme.dim()),
        ]),
        LoadState::Failed(message) => Line::from(vec![
            Span::styled(format!("Could not list domains: {message}"), theme.error()),
            Span::styled(format!("   {reload}"), theme.key()),
            Span::styled(" retry", theme.dim()),
        ]),
    }
}

/// A Manage tab of an account's domain.
pub fn tab(frame: &mut Frame, area: Rect, app: &App, d: &Domain, tab: ManageTab, theme: &Theme) {
    let Some(view) = app.cloud() else {
        return;
    };
    let api = view.domain(&d.name);
    let mut lines = match tab {
        ManageTab::Basic => basic(d, api, theme),
        ManageTab::Origin => origin(d, api, theme),
        ManageTab::Advanced => {
            card(frame, area, app, view, d, theme);
            return;
        }
        ManageTab::Sessions => vec![Line::from(Span::styled(NO_SESSIONS_TEXT, theme.dim()))],
    };
    if tab == ManageTab::Basic {
        lines.push(Line::default());
        lines.extend(probe_lines(app, view, d, theme));
    }
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), area);
}

fn basic<'a>(d: &'a Domain, api: Option<&'a CloudDomain>, theme: &Theme) -> Vec<Line<'a>> {
    let (cname, status, service) = api.map_or((String::new(), String::new(), String::new()), |c| {
        (c.cname.clone(), c.status.clone(), c.service_type.clone())
    });
    let status_style = if status == "online" {
        theme.good()
    } else {
        theme.warn()
    };
    let ws = effective_timeout(d);
    vec![
        kv(
            "Domain",
            W,
            vec![Span::styled(d.name.to_string(), theme.value())],
            theme,
        ),
        kv("CNAME", W, vec![Span::raw(cname)], theme),
        kv("Status", W, vec![Span::styled(status, status_style)], theme),
        kv(
            "Service type",
            W,
            vec![
                Span::raw(service_type_label(&service)),
                Span::styled(format!(" (ServiceType {service})"), theme.dim()),
            ],
            theme,
        ),
        kv(
            "Area",
            W,
            vec![Span::raw(api.map_or("", |c| c.area.as_str()))],
            theme,
        ),
        kv("WebSocket", W, vec![Span::raw(ws.column_label())], theme),
        kv(
            "",
            W,
            vec![Span::styled(ws.explanation(), theme.dim())],
            theme,
        ),
    ]
}

fn origin<'a>(d: &'a Domain, api: Option<&'a CloudDomain>, theme: &Theme) -> Vec<Line<'a>> {
    let Some(c) = api else {
        return Vec::new();
    };
    let mut lines = vec![kv(
        "Origins",
        W,
        vec![Span::styled(format!("{}", c.origins.len()), theme.dim())],
        theme,
    )];
    for o in &c.origins {
        lines.push(kv(
            "",
            W,
            vec![Span::styled(o.as_str(), theme.value())],
            theme,
        ));
    }
    let text = |v: &'a Option<String>| v.as_deref().unwrap_or("—");
    lines.push(kv(
        "Origin type",
        W,
        vec![Span::raw(text(&c.origin_type))],
        theme,
    ));
    let server = c
        .server_name
        .clone()
        .unwrap_or_else(|| format!("{} (the domain name)", d.name));
    lines.push(kv("Host to origin", W, vec![Span::raw(server)], theme));
    lines.push(kv(
        "Origin protocol",
        W,
        vec![Span::raw(text(&c.origin_protocol))],
        theme,
    ));
    lines.push(Line::default());
    lines.push(Line::from(Span::styled(
        "Origins are changed in Tencent Cloud's own console; this one sets WebSocket only.",
        theme.dim(),
    )));
    lines
}

/// The "WebSocket timeout" card, with the edge's measurement under it.
fn card(frame: &mut Frame, area: Rect, app: &App, view: &CloudView, d: &Domain, theme: &Theme) {
    let b = block(" WebSocket timeout ", false, theme);
    let inner = b.inner(area);
    frame.render_widget(b, area);
    let mut lines = super::manage::timeout_setting_lines(d, theme);
    lines.push(Line::from(Span::styled(RECOMMENDATION_TEXT, theme.dim())));
    lines.push(Line::from(Span::styled(
        "Whether this domain may use the switch is Tencent Cloud's to say: a refusal is shown as it comes.",
        theme.dim(),
    )));
    lines.push(Line::default());
    lines.extend(probe_lines(app, view, d, theme));
    lines.push(Line::default());
    let context = app.context_behind_help();
    let mut buttons = Vec::new();
    for (command, what) in [
        (Command::Edit, " edit the timeout   "),
        (Command::Toggle, " switch on/off   "),
        (Command::Probe, " probe the edge"),
    ] {
        if let Some(keys) = keys_for(context, command) {
            buttons.push(Span::styled(keys, theme.key()));
            buttons.push(Span::raw(what));
        }
    }
    lines.push(Line::from(buttons));
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), inner);
}

/// The edge's idle timeout as `probe --silent` measured it, beside the
/// configured one.
fn probe_lines(app: &App, view: &CloudView, d: &Domain, theme: &Theme) -> Vec<Line<'static>> {
    let configured = effective_timeout(d);
    let url = format!("wss://{}/", d.name.to_ascii_lowercase());
    let probe_key = key(app, Command::Probe);
    let measured = match view.probe(&d.name) {
        None => vec![
            Span::styled("not measured", theme.dim()),
            Span::styled(format!("   {probe_key}"), theme.key()),
            Span::styled(format!(" probes {url} silently"), theme.dim()),
        ],
        Some(ProbeState::Running { since }) => vec![Span::styled(
            format!(
                "probing {url}… idle {} s so far",
                app.clock.mono.saturating_duration_since(*since).as_secs()
            ),
            theme.value(),
        )],
        Some(ProbeState::Done(result)) => {
            let mut spans = match result.cut_after_idle_secs {
                Some(idle) => {
                    let agrees = configured
                        .secs()
                        .is_some_and(|c| (idle - c as f64).abs() <= 2.0);
                    let style = if agrees { theme.good() } else { theme.warn() };
                    vec![Span::styled(format!("cut after {idle:.0} s idle"), style)]
                }
                None => Vec::new(),
            };
            if !spans.is_empty() {
                spans.push(Span::raw(" "));
            }
            spans.push(Span::styled(result.text.clone(), theme.dim()));
            spans.push(Span::styled(format!("   {probe_key}"), theme.key()));
            spans.push(Span::styled(" again", theme.dim()));
            spans
        }
    };
    vec![
        kv(
            "Configured",
            W,
            vec![Span::raw(configured.to_string())],
            theme,
        ),
        kv("Measured on edge", W, measured, theme),
        Line::from(Span::styled(PROPAGATION_TEXT, theme.dim())),
    ]
}

/// Live Sessions and the Event Log on an account.
pub fn no_sessions(frame: &mut Frame, area: Rect, title: &str, focused: bool, theme: &Theme) {
    let b = block(format!(" {title} "), focused, theme);
    let inner = b.inner(area);
    frame.render_widget(b, area);
    frame.render_widget(
        Paragraph::new(Line::from(Span::styled(NO_SESSIONS_TEXT, theme.dim())))
            .wrap(Wrap { trim: false }),
        inner,
    );
}
