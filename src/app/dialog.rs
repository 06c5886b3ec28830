//! Modal dialogs: the WebSocket edit dialog, the forms, confirmations and
//! messages. Each keeps the operator's draft until it is saved or cancelled.

use std::time::Duration;

use strum::VariantNames;
use tui_input::{Input, InputRequest};

use crate::config::{
    Acceleration, Area, Config, Domain, DomainName, Edit, EffectiveTimeout, MAX_TIMEOUT_SECS,
    NewDomain, OriginProtocol, Switch, WebSocketSettings, effective_timeout_for, rules,
};
use crate::relay::{CloseCause, SessionId, SessionSnapshot};

use super::action::SaveError;
use super::keymap::Context;

#[derive(Debug)]
pub enum Dialog {
    EditWebSocket(WsDraft),
    Form(Form),
    Confirm(Confirm),
    Message(Message),
}

/// The "WebSocket timeout" edit dialog's draft.
#[derive(Debug)]
pub struct WsDraft {
    pub domain: DomainName,
    pub acceleration: Acceleration,
    /// The settings in force, which the draft is compared with: as the
    /// dialog opened, then as changed elsewhere since (or by `r`).
    pub live: WebSocketSettings,
    /// The settings the dialog opened with, once they changed elsewhere
    /// while it was open (the dialog says so).
    pub changed_elsewhere: Option<WebSocketSettings>,
    pub switch: Switch,
    /// The slider position: the last valid timeout.
    pub timeout: u16,
    /// The numeric field; kept equal to `timeout` unless being typed into.
    pub field: Input,
    /// Why the field's text is not a valid timeout.
    pub field_error: Option<String>,
    /// The next digit replaces the field (it shows a value set by the
    /// slider), as a selected field would.
    pub fresh: bool,
    /// Focus on OK (true) or Cancel.
    pub ok_focused: bool,
    pub saving: bool,
    pub error: Option<SaveError>,
}

impl WsDraft {
    pub fn new(domain: &Domain) -> Self {
        let ws = domain.websocket;
        Self {
            domain: domain.name.clone(),
            acceleration: domain.acceleration,
            live: ws,
            changed_elsewhere: None,
            switch: ws.switch,
            timeout: ws.timeout,
            field: Input::new(ws.timeout.to_string()),
            field_error: None,
            fresh: true,
            ok_focused: true,
            saving: false,
            error: None,
        }
    }

    pub fn settings(&self) -> WebSocketSettings {
        WebSocketSettings {
            switch: self.switch,
            timeout: self.timeout,
            ping_resets_idle: self.live.ping_resets_idle,
        }
    }

    pub fn effective(&self) -> EffectiveTimeout {
        effective_timeout_for(self.acceleration, &self.settings())
    }

    pub fn live_effective(&self) -> EffectiveTimeout {
        effective_timeout_for(self.acceleration, &self.live)
    }

    /// What was in force when the dialog opened, once that changed
    /// elsewhere while it was open.
    pub fn opened_effective(&self) -> Option<EffectiveTimeout> {
        self.changed_elsewhere
            .map(|was| effective_timeout_for(self.acceleration, &was))
    }

    pub fn differs(&self) -> bool {
        self.switch != self.live.switch || self.timeout != self.live.timeout
    }

    pub fn toggle(&mut self) {
        self.switch = self.switch.toggled();
        self.error = None;
    }

    /// Moves the slider; the field follows.
    pub fn adjust(&mut self, delta: i16) {
        let base = if self.field_error.is_some() {
            self.timeout
        } else {
            self.parse_field().unwrap_or(self.timeout)
        };
        let v = (i32::from(base) + i32::from(delta)).clamp(0, i32::from(MAX_TIMEOUT_SECS));
        self.set_timeout(u16::try_from(v).unwrap_or(0));
    }

    fn set_timeout(&mut self, v: u16) {
        self.timeout = v;
        self.field = Input::new(v.to_string());
        self.field_error = None;
        self.fresh = true;
        self.error = None;
    }

    /// A key typed into the numeric field; the slider follows when the text
    /// is a valid timeout.
    pub fn type_key(&mut self, req: InputRequest) {
        match req {
            InputRequest::InsertChar(c) if !c.is_ascii_digit() => return,
            InputRequest::InsertChar(_) if self.fresh => self.field.reset(),
            _ => {}
        }
        self.fresh = false;
        self.field.handle(req);
        self.error = None;
        match self.parse_field() {
            Ok(v) => {
                self.timeout = v;
                self.field_error = None;
            }
            Err(e) => self.field_error = Some(e),
        }
    }

    fn parse_field(&self) -> Result<u16, String> {
        let text = self.field.value().trim();
        if text.is_empty() {
            return Err(format!(
                "type a timeout in seconds, 0 to {MAX_TIMEOUT_SECS}"
            ));
        }
        let value: i64 = text
            .parse()
            .map_err(|_| format!("\"{text}\" is not a number of seconds"))?;
        rules::timeout(value).map_err(|v| format!("{}: {}", v.message, v.fix))
    }

    pub fn edit(&self) -> Edit {
        Edit::SetWebSocket {
            domain: self.domain.to_string(),
            switch: Some(self.switch),
            timeout: Some(self.timeout),
        }
    }

    /// What the draft would do to this domain's live sessions right now.
    pub fn impact(&self, live: &[SessionSnapshot]) -> Impact {
        let limit = self.effective().limit;
        let mut impact = Impact::default();
        for s in live.iter().filter(|s| self.domain == *s.domain) {
            impact.live += 1;
            if let Some(limit) = limit
                && s.idle >= limit
            {
                impact.cut.push((s.id, s.idle));
            }
        }
        impact.cut.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        impact
    }
}

/// Sessions a draft timeout would cut the moment it is applied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Impact {
    /// Live sessions on the domain.
    pub live: usize,
    /// Sessions idle at least as long as the draft allows: (id, idle),
    /// longest idle first.
    pub cut: Vec<(SessionId, Duration)>,
}

/// A form field.
#[derive(Debug)]
pub enum FieldValue {
    Text(Input),
    Choice {
        options: &'static [&'static str],
        index: usize,
    },
}

/// What a form field holds: fields are found by this, never by their label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr)]
pub enum FieldId {
    #[strum(serialize = "Domain name")]
    DomainName,
    Acceleration,
    Area,
    Origins,
    #[strum(serialize = "Server name")]
    ServerName,
    #[strum(serialize = "Origin protocol")]
    OriginProtocol,
}

#[derive(Debug)]
pub struct Field {
    pub id: FieldId,
    /// The id's label.
    pub label: &'static str,
    pub help: &'static str,
    pub value: FieldValue,
    pub error: Option<String>,
}

impl Field {
    fn text(id: FieldId, help: &'static str, value: &str) -> Self {
        Self {
            id,
            label: id.into(),
            help,
            value: FieldValue::Text(Input::new(value.to_string())),
            error: None,
        }
    }

    /// A choice among an enum's values (its `VARIANTS`, as the file spells them).
    fn choice(
        id: FieldId,
        help: &'static str,
        options: &'static [&'static str],
        selected: &str,
    ) -> Self {
        Self {
            id,
            label: id.into(),
            help,
            value: FieldValue::Choice {
                options,
                index: options.iter().position(|o| *o == selected).unwrap_or(0),
            },
            error: None,
        }
    }

    pub fn text_value(&self) -> &str {
        match &self.value {
            FieldValue::Text(input) => input.value(),
            FieldValue::Choice { options, index } => options.get(*index).copied().unwrap_or(""),
        }
    }

    pub fn is_text(&self) -> bool {
        matches!(self.value, FieldValue::Text(_))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormKind {
    AddDomain,
    Origins { domain: String },
}

/// The add-domain form and the Origin Configuration form.
#[derive(Debug)]
pub struct Form {
    pub kind: FormKind,
    pub fields: Vec<Field>,
    pub focus: usize,
    pub saving: bool,
    pub error: Option<SaveError>,
    /// The domain's origins changed elsewhere while the form was open.
    pub changed_elsewhere: bool,
}

const ORIGINS_HELP: &str = "host:port[:weight], comma-separated";
const SERVER_NAME_HELP: &str = "Host header sent to the origin; empty = the domain name";
const PROTOCOL_HELP: &str = "http = ws://, https = wss://";

impl Form {
    pub fn add_domain() -> Self {
        Self {
            kind: FormKind::AddDomain,
            fields: vec![
                Field::text(FieldId::DomainName, "e.g. www.example.com", ""),
                Field::choice(
                    FieldId::Acceleration,
                    "only full-site domains can configure WebSocket",
                    Acceleration::VARIANTS,
                    Acceleration::FullSite.as_str(),
                ),
                Field::choice(FieldId::Area, "", Area::VARIANTS, Area::default().as_str()),
                Field::text(FieldId::Origins, ORIGINS_HELP, "127.0.0.1:9001"),
                Field::text(FieldId::ServerName, SERVER_NAME_HELP, ""),
                Field::choice(
                    FieldId::OriginProtocol,
                    PROTOCOL_HELP,
                    OriginProtocol::VARIANTS,
                    OriginProtocol::default().as_str(),
                ),
            ],
            focus: 0,
            saving: false,
            error: None,
            changed_elsewhere: false,
        }
    }

    pub fn origins(domain: &Domain) -> Self {
        let origins: Vec<String> = domain.origins.iter().map(|o| o.to_string()).collect();
        Self {
            kind: FormKind::Origins {
                domain: domain.name.to_string(),
            },
            fields: vec![
                Field::text(FieldId::Origins, ORIGINS_HELP, &origins.join(", ")),
                Field::text(
                    FieldId::ServerName,
                    SERVER_NAME_HELP,
                    domain.server_name.as_deref().unwrap_or(""),
                ),
                Field::choice(
                    FieldId::OriginProtocol,
                    PROTOCOL_HELP,
                    OriginProtocol::VARIANTS,
                    domain.origin_protocol.as_str(),
                ),
            ],
            focus: 0,
            saving: false,
            error: None,
            changed_elsewhere: false,
        }
    }

    pub fn title(&self) -> String {
        match &self.kind {
            FormKind::AddDomain => "Add domain".to_string(),
            FormKind::Origins { domain } => format!("Origin Configuration · {domain}"),
        }
    }

    pub fn focused(&mut self) -> Option<&mut Field> {
        self.fields.get_mut(self.focus)
    }

    pub fn move_focus(&mut self, delta: isize) {
        let n = self.fields.len() as isize;
        if n > 0 {
            self.focus = (self.focus as isize + delta).rem_euclid(n) as usize;
        }
    }

    /// ←/→ and Space: cycle a choice; on a text field ←/→ move the cursor
    /// and Space types a space.
    pub fn adjust(&mut self, delta: i16, space: bool) {
        let Some(field) = self.focused() else { return };
        match &mut field.value {
            FieldValue::Choice { options, index } => {
                let n = options.len() as isize;
                let step = if delta < 0 { -1 } else { 1 };
                *index = (*index as isize + step).rem_euclid(n.max(1)) as usize;
            }
            FieldValue::Text(input) => {
                let req = if space {
                    InputRequest::InsertChar(' ')
                } else if delta < 0 {
                    InputRequest::GoToPrevChar
                } else {
                    InputRequest::GoToNextChar
                };
                input.handle(req);
            }
        }
        self.error = None;
    }

    pub fn type_key(&mut self, req: InputRequest) {
        if let Some(field) = self.focused()
            && let FieldValue::Text(input) = &mut field.value
        {
            input.handle(req);
            field.error = None;
        }
        self.error = None;
    }

    fn value(&self, id: FieldId) -> &str {
        self.fields
            .iter()
            .find(|f| f.id == id)
            .map_or("", |f| f.text_value().trim())
    }

    fn set_error(&mut self, id: FieldId, error: String) {
        if let Some(f) = self.fields.iter_mut().find(|f| f.id == id) {
            f.error = Some(error);
        }
    }

    /// Checks every field with the configuration's own rules and builds the
    /// edit. On failure each bad field carries its error and focus moves to
    /// the first one.
    pub fn validate(&mut self, config: &Config) -> Option<Edit> {
        for f in &mut self.fields {
            f.error = None;
        }
        let origins: Vec<String> = self
            .value(FieldId::Origins)
            .split([',', ' '])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        let parsed: Result<Vec<_>, _> = origins.iter().map(|o| rules::origin(o)).collect();
        match parsed.and_then(|p| rules::origin_list(&p)) {
            Ok(()) => {}
            Err(e) => self.set_error(FieldId::Origins, e.to_string()),
        }
        let server_name =
            Some(self.value(FieldId::ServerName).to_string()).filter(|s| !s.is_empty());
        if let Some(s) = &server_name
            && let Err(e) = rules::server_name(s)
        {
            self.set_error(FieldId::ServerName, e.to_string());
        }
        let protocol = self
            .value(FieldId::OriginProtocol)
            .parse()
            .unwrap_or_default();
        let edit = match &self.kind {
            FormKind::AddDomain => {
                let name = self.value(FieldId::DomainName).to_string();
                if let Err(e) = rules::domain_name(&name) {
                    self.set_error(FieldId::DomainName, e.to_string());
                } else if config.domain(&name).is_some() {
                    self.set_error(
                        FieldId::DomainName,
                        format!("domain \"{name}\" already exists; choose another name"),
                    );
                }
                let acceleration = self
                    .value(FieldId::Acceleration)
                    .parse()
                    .unwrap_or(Acceleration::FullSite);
                let area = self.value(FieldId::Area).parse().unwrap_or_default();
                Edit::AddDomain(NewDomain {
                    name,
                    acceleration,
                    area,
                    origins,
                    server_name,
                    origin_protocol: protocol,
                })
            }
            FormKind::Origins { domain } => Edit::SetOrigins {
                domain: domain.clone(),
                origins,
                server_name,
                origin_protocol: protocol,
            },
        };
        match self.fields.iter().position(|f| f.error.is_some()) {
            Some(first) => {
                self.focus = first;
                None
            }
            None => Some(edit),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confirm {
    DeleteDomain {
        domain: String,
        live: usize,
    },
    Offline {
        domain: String,
        live: usize,
    },
    CloseSession {
        id: SessionId,
        domain: String,
        client: String,
    },
    Quit {
        live: usize,
        /// Why no background relay can keep them (`Settings::sessions_stay`):
        /// then the question offers only to close them.
        sessions_stay: Option<&'static str>,
    },
}

impl Confirm {
    /// Whose keys answer it: the quit question offers `k` only while
    /// sessions are live and a background relay can keep them.
    pub fn context(&self) -> Context {
        match self {
            Confirm::Quit { live: 0, .. } => Context::Confirm,
            Confirm::Quit {
                sessions_stay: None,
                ..
            } => Context::ConfirmQuit,
            Confirm::Quit { .. } => Context::ConfirmQuitClosing,
            _ => Context::Confirm,
        }
    }

    pub fn title(&self) -> &'static str {
        match self {
            Confirm::DeleteDomain { .. } => "Delete domain",
            Confirm::Offline { .. } => "Take domain offline",
            Confirm::CloseSession { .. } => "Close session",
            Confirm::Quit { .. } => "Quit",
        }
    }

    pub fn question(&self) -> String {
        let sessions = |n: usize| {
            if n == 1 {
                "1 live session".to_string()
            } else {
                format!("{n} live sessions")
            }
        };
        match self {
            Confirm::DeleteDomain { domain, live } => format!(
                "Delete {domain} from the configuration? {} closed with {}. \
                 The file is saved; comments elsewhere are kept.",
                if *live == 0 {
                    "No live sessions are".to_string()
                } else {
                    format!("Its {} will be", sessions(*live))
                },
                close_of(&CloseCause::DomainRemoved),
            ),
            Confirm::Offline { domain, live } => format!(
                "Take {domain} offline? Its {} will be closed with {}, \
                 and new clients get 503.",
                sessions(*live),
                close_of(&CloseCause::DomainOffline),
            ),
            Confirm::CloseSession { id, domain, client } => format!(
                "Close session #{id} ({domain}, client {client})? Both sides get {}.",
                close_of(&CloseCause::Operator),
            ),
            // The sessions ended while the question was open.
            Confirm::Quit { live: 0, .. } => {
                "Quit? The live sessions have ended meanwhile; nothing is left to close."
                    .to_string()
            }
            Confirm::Quit {
                live,
                sessions_stay: None,
            } => format!(
                "Quit with {}? Keep them running in a background relay that takes them \
                 over (`ecdn-console attach` gets them back), or close them with {}.",
                sessions(*live),
                close_of(&CloseCause::Shutdown),
            ),
            Confirm::Quit {
                live,
                sessions_stay: Some(why),
            } => format!(
                "Quit with {}? They will be closed with {}: {why}, so no background \
                 relay can keep them.",
                sessions(*live),
                close_of(&CloseCause::Shutdown),
            ),
        }
    }
}

/// The close frame the relay sends for one of its own causes, as the
/// question quotes it: `1001 "domain removed"`.
fn close_of(cause: &CloseCause) -> String {
    cause
        .relay_close()
        .map_or_else(|| cause.to_string(), |frame| frame.to_string())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub title: String,
    pub body: String,
    /// Set when the message reports a failed save (offers `r` on conflict).
    pub error: Option<SaveError>,
}
