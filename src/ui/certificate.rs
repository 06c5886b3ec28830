//! A domain's TLS certificate as the domain list and Basic Information
//! show it: subject and expiry, warning-coloured within 14 days of expiry.

use ratatui::style::Style;
use ratatui::text::Span;

use crate::app::{DomainCertificate, Expiry};

use super::theme::Theme;

fn expiry_style(expiry: Expiry, theme: &Theme) -> Style {
    match expiry {
        Expiry::Valid(_) => theme.base(),
        Expiry::Soon(_) => theme.warn(),
        Expiry::Expired => theme.error(),
    }
}

/// The domain list's cell: `89 d left` (with the subject when `wide`),
/// `!9 d left`, `EXPIRED`, `none`, `no TLS`, or `—` when not known.
pub fn cell(cert: DomainCertificate<'_>, wide: bool, theme: &Theme) -> Span<'static> {
    match cert {
        DomainCertificate::Unknown => Span::styled("—", theme.dim()),
        DomainCertificate::NoTls => Span::styled("no TLS", theme.dim()),
        DomainCertificate::Missing => Span::styled("none", theme.dim()),
        DomainCertificate::Served { info, expiry, .. } => {
            let text = if wide {
                format!("{} · {}", expiry.label(), info.subject)
            } else {
                expiry.label()
            };
            Span::styled(text, expiry_style(expiry, theme))
        }
    }
}

/// Basic Information's lines: the subject, then the expiry date and the
/// time left; or why there is none.
pub fn lines(cert: DomainCertificate<'_>, theme: &Theme) -> Vec<Vec<Span<'static>>> {
    match cert {
        DomainCertificate::Unknown => vec![vec![Span::styled(
            "— not known (this relay does not report its certificates)",
            theme.dim(),
        )]],
        DomainCertificate::NoTls => vec![vec![Span::styled(
            "— no wss:// here: [relay] tls-listen is not set",
            theme.dim(),
        )]],
        DomainCertificate::Missing => vec![
            vec![Span::styled("none", theme.warn())],
            vec![Span::styled(
                "no certificate of its own and no [relay] tls-certificate: its wss:// clients fail the TLS handshake",
                theme.dim(),
            )],
        ],
        DomainCertificate::Served {
            info,
            default,
            expiry,
        } => {
            let mut subject = vec![Span::styled(info.subject.clone(), theme.value())];
            if default {
                subject.push(Span::styled(" (the default tls-certificate)", theme.dim()));
            }
            let expires = vec![
                Span::raw(format!(
                    "expires {} ",
                    humantime::format_rfc3339_seconds(info.not_after)
                )),
                Span::styled(format!("({})", expiry.label()), expiry_style(expiry, theme)),
            ];
            vec![subject, expires]
        }
    }
}
