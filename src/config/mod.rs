//! The configuration: model, validation, the effective-timeout rule, and
//! comment-preserving atomic persistence. Imports nothing else of ours.

mod edit;
mod error;
mod follow;
mod model;
mod name;
mod nudges;
mod parse;
pub mod rules;
mod schema;
mod store;
mod timeout;
mod watch;

pub use edit::{Edit, NewDomain};
pub use error::{ConfigError, Problem, Problems, RuleViolation};
pub use follow::FileFollower;
pub use model::{
    Acceleration, AdminSettings, Area, CertificateFiles, Config, Domain, IdleCloseMode, Origin,
    OriginProtocol, RelaySettings, Status, Switch, WebSocketSettings, default_workers,
    host_without_port,
};
pub use name::DomainName;
pub use store::{
    ConfigFile, DEFAULT_CONFIG, DEMO_CONFIG, default_config_path, read_regular_file, write_atomic,
    write_atomic_with,
};
pub use timeout::{
    EffectiveTimeout, LIMITATION_TEXT, MAX_TIMEOUT_SECS, RECOMMENDATION_TEXT,
    RECOMMENDED_TIMEOUT_SECS, SWITCH_OFF_TIMEOUT_SECS, TimeoutSource, effective_timeout,
    effective_timeout_for,
};
pub use watch::{ConfigWatch, POLL_INTERVAL as WATCH_POLL_INTERVAL, QUIET_PERIOD, Reload};
