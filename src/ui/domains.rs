//! Domain Management: the domain list with its `/` filter.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Row, Table, TableState};

use crate::app::keymap::{Context, keys_for};
use crate::app::{App, Certificates, Command};
use crate::config::{Acceleration, Domain, Status, effective_timeout};

use super::theme::Theme;
use super::widgets::{block, row_highlight, text_input};

pub fn render(frame: &mut Frame, area: Rect, app: &App, focused: bool, theme: &Theme) {
    let visible = app.visible_domains();
    let title = format!(
        " Domain Management · {} of {} domains ",
        visible.len(),
        app.config.domains.len()
    );
    let outer = block(title, focused, theme);
    let inner = outer.inner(area);
    frame.render_widget(outer, area);

    let show_filter = app.domains.filtering || !app.domains.filter.value().is_empty();
    let cloud = app.cloud();
    let [load_area, filter_area, table_area] = Layout::vertical([
        Constraint::Length(u16::from(cloud.is_some())),
        Constraint::Length(u16::from(show_filter)),
        Constraint::Min(0),
    ])
    .areas(inner);
    if let Some(view) = cloud {
        frame.render_widget(
            Paragraph::new(super::cloud::load_line(app, view, theme)),
            load_area,
        );
    }
    if show_filter {
        let [label, input] =
            Layout::horizontal([Constraint::Length(8), Constraint::Min(0)]).areas(filter_area);
        frame.render_widget(Paragraph::new(Span::styled("Filter: ", theme.key())), label);
        text_input(
            frame,
            input,
            &app.domains.filter,
            app.domains.filtering && focused,
            theme,
        );
    }

    // Every column when wide; without CNAME and Area in 80 columns; only
    // what the WebSocket setting needs beside the menu (Enter shows the rest).
    let layout = if inner.width >= 110 {
        Columns::All
    } else if inner.width >= 70 {
        Columns::Main
    } else {
        Columns::Narrow
    };
    let certificates = certificate_column(app, layout, inner.width);
    let mut header = vec!["Domain", "Status"];
    let mut widths = vec![Constraint::Fill(1), Constraint::Length(7)];
    match layout {
        Columns::All => {
            header.extend(["CNAME", "Acceleration", "Area", "Origin"]);
            widths.extend([
                Constraint::Fill(1),
                Constraint::Length(15),
                Constraint::Length(8),
                Constraint::Length(15),
            ]);
        }
        Columns::Main => {
            header.extend(["Type", "Origin"]);
            widths.extend([Constraint::Length(10), Constraint::Length(15)]);
        }
        Columns::Narrow => {}
    }
    match certificates {
        CertColumn::Wide => {
            header.push("Certificate");
            widths.push(Constraint::Length(32));
        }
        CertColumn::Short => {
            header.push("Certificate");
            widths.push(Constraint::Length(11));
        }
        // In place of Origin (Enter shows it), so that the domain names
        // keep their width in 80 columns.
        CertColumn::InsteadOfOrigin => {
            if let Some(h) = header.last_mut() {
                *h = "Certificate";
            }
        }
        CertColumn::None => {}
    }
    header.push("WebSocket");
    widths.push(Constraint::Length(13));
    // An account's domains have no live sessions the console could see.
    if cloud.is_none() {
        header.push(" Live");
        widths.push(Constraint::Length(5));
    }
    let rows: Vec<Row> = visible
        .iter()
        .map(|d| match cloud {
            Some(view) => cloud_row(d, view.domain(&d.name), layout, theme),
            None => row(app, d, layout, certificates, theme),
        })
        .collect();
    if visible.is_empty() {
        // The keys named are the domain list's own.
        let key = |command| keys_for(Context::Domains, command).unwrap_or_default();
        let msg = if cloud.is_some() && app.config.domains.is_empty() {
            "No domains on the account (yet).".to_string()
        } else if app.config.domains.is_empty() {
            format!(
                "No domains yet. Press {} to add one.",
                key(Command::AddDomain)
            )
        } else {
            let first = |keys: String| keys.split('/').next().unwrap_or_default().to_string();
            format!(
                "No domain matches the filter. {} clears it.",
                first(key(Command::Back))
            )
        };
        frame.render_widget(
            Paragraph::new(Line::from(Span::styled(msg, theme.dim()))),
            table_area,
        );
        return;
    }
    let table = Table::new(rows, widths)
        .header(Row::new(header).style(theme.table_header()))
        .column_spacing(1)
        .row_highlight_style(row_highlight(focused && !app.domains.filtering, theme));
    let height = usize::from(table_area.height.saturating_sub(1));
    let window = app.domains.cursor.window(visible.len(), height);
    let mut state = TableState::default()
        .with_offset(window.start)
        .with_selected(Some(app.domains.cursor.index));
    frame.render_stateful_widget(table, table_area, &mut state);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Columns {
    All,
    Main,
    Narrow,
}

/// Where the certificate column goes, if anywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CertColumn {
    /// Its own column, with the subject.
    Wide,
    /// Its own column, expiry only.
    Short,
    /// Expiry only, where Origin would be.
    InsteadOfOrigin,
    None,
}

/// Inner width from which the certificate's subject fits beside every
/// other column with the domain names still whole.
const CERT_SUBJECT_WIDTH: u16 = 140;

/// A relay that serves `wss://` gets the column wherever there is room
/// (expiry matters more than the origin at a glance); one that does not
/// says so in the widest layout only, and an unknown one never.
fn certificate_column(app: &App, layout: Columns, width: u16) -> CertColumn {
    match (&app.certificates, layout) {
        (Certificates::Unknown, _) | (_, Columns::Narrow) => CertColumn::None,
        (_, Columns::All) if width >= CERT_SUBJECT_WIDTH => CertColumn::Wide,
        (_, Columns::All) => CertColumn::Short,
        (Certificates::Served(_), Columns::Main) => CertColumn::InsteadOfOrigin,
        (Certificates::NoTls, Columns::Main) => CertColumn::None,
    }
}

fn row<'a>(
    app: &App,
    d: &'a Domain,
    layout: Columns,
    certificates: CertColumn,
    theme: &Theme,
) -> Row<'a> {
    let live = app.live_on(&d.name);
    let status = match d.status {
        Status::Online => Span::styled("online", theme.good()),
        Status::Offline => Span::styled("offline", theme.warn()),
    };
    let origin = match d.origins.as_slice() {
        [] => String::new(),
        [one] => one.to_string(),
        [first, rest @ ..] => format!("{first} +{}", rest.len()),
    };
    let ws = effective_timeout(d);
    let ws_style = if d.can_configure_websocket() {
        theme.base()
    } else {
        theme.dim()
    };
    let mut cells: Vec<ratatui::widgets::Cell> =
        vec![d.name.as_str().into(), Line::from(status).into()];
    match layout {
        Columns::All => {
            cells.push(d.cname().into());
            cells.push(d.acceleration.label().replace(" acceleration", "").into());
            cells.push(d.area.as_str().into());
            cells.push(origin.into());
        }
        Columns::Main => {
            cells.push(short_acceleration(d.acceleration).into());
            if certificates != CertColumn::InsteadOfOrigin {
                cells.push(origin.into());
            }
        }
        Columns::Narrow => {}
    }
    if certificates != CertColumn::None {
        let wide = certificates == CertColumn::Wide;
        let cert = super::certificate::cell(app.certificate(&d.name), wide, theme);
        cells.push(Line::from(cert).into());
    }
    cells.push(Span::styled(ws.column_label(), ws_style).into());
    cells.push(format!("{live:>5}").into());
    Row::new(cells)
}

/// A row of an account's domain: the API's status, CNAME, service type
/// and origins as it writes them.
fn cloud_row<'a>(
    d: &'a Domain,
    api: Option<&'a crate::cloud::CloudDomain>,
    layout: Columns,
    theme: &Theme,
) -> Row<'a> {
    let Some(c) = api else {
        return Row::new(vec![d.name.as_str()]);
    };
    let status_style = if c.status == "online" {
        theme.good()
    } else {
        theme.warn()
    };
    let origin = match c.origins.as_slice() {
        [] => String::new(),
        [one] => one.clone(),
        [first, rest @ ..] => format!("{first} +{}", rest.len()),
    };
    let mut cells: Vec<ratatui::widgets::Cell> = vec![
        d.name.as_str().into(),
        Line::from(Span::styled(c.status.clone(), status_style)).into(),
    ];
    match layout {
        Columns::All => {
            cells.push(c.cname.clone().into());
            cells.push(c.acceleration_column().into());
            cells.push(c.area.clone().into());
            cells.push(origin.into());
        }
        Columns::Main => {
            let short = c.acceleration.map_or(c.service_type.clone(), |a| {
                short_acceleration(a).to_string()
            });
            cells.push(short.into());
            cells.push(origin.into());
        }
        Columns::Narrow => {}
    }
    cells.push(effective_timeout(d).column_label().into());
    Row::new(cells)
}

fn short_acceleration(a: Acceleration) -> &'static str {
    match a {
        Acceleration::FullSite => "full-site",
        Acceleration::DynamicStatic => "dyn+static",
        Acceleration::Dynamic => "dynamic",
    }
}
