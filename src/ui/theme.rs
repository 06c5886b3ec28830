//! Colours and emphasis. Sixteen named ANSI colours by default (RGB glitches
//! on some terminals); with `NO_COLOR` / `--no-color` no colour at all, and
//! selection is shown with reverse video + bold so nothing depends on colour.

use ratatui::style::{Color, Modifier, Style};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Theme {
    pub mono: bool,
}

/// How close a session is to its idle deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Ok,
    Warn,
    Danger,
    /// No idle limit.
    None,
}

impl Theme {
    pub fn color() -> Self {
        Self { mono: false }
    }

    pub fn mono() -> Self {
        Self { mono: true }
    }

    /// `NO_COLOR` set to anything non-empty (no-color.org), or the flag.
    pub fn from_env(no_color_flag: bool) -> Self {
        let env = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Self {
            mono: no_color_flag || env,
        }
    }

    fn fg(&self, c: Color) -> Style {
        if self.mono {
            Style::new()
        } else {
            Style::new().fg(c)
        }
    }

    pub fn base(&self) -> Style {
        Style::new()
    }

    pub fn header(&self) -> Style {
        if self.mono {
            Style::new().add_modifier(Modifier::REVERSED)
        } else {
            Style::new().fg(Color::White).bg(Color::Blue)
        }
    }

    pub fn banner(&self) -> Style {
        if self.mono {
            Style::new().add_modifier(Modifier::BOLD)
        } else {
            Style::new().fg(Color::Black).bg(Color::Yellow)
        }
    }

    pub fn title(&self) -> Style {
        self.fg(Color::Cyan).add_modifier(Modifier::BOLD)
    }

    pub fn border(&self, focused: bool) -> Style {
        match (self.mono, focused) {
            (true, true) => Style::new().add_modifier(Modifier::BOLD),
            (true, false) => Style::new(),
            (false, true) => Style::new().fg(Color::Cyan),
            (false, false) => Style::new().fg(Color::DarkGray),
        }
    }

    /// The selected row where focus is.
    pub fn selected(&self) -> Style {
        self.filled(Color::White, Color::Blue)
    }

    /// The selected row of a list that does not have focus.
    pub fn selected_inactive(&self) -> Style {
        if self.mono {
            Style::new().add_modifier(Modifier::BOLD | Modifier::UNDERLINED)
        } else {
            Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD)
        }
    }

    pub fn table_header(&self) -> Style {
        self.fg(Color::Yellow).add_modifier(Modifier::BOLD)
    }

    pub fn key(&self) -> Style {
        self.fg(Color::Cyan).add_modifier(Modifier::BOLD)
    }

    pub fn dim(&self) -> Style {
        if self.mono {
            Style::new()
        } else {
            Style::new().fg(Color::DarkGray)
        }
    }

    pub fn label(&self) -> Style {
        self.fg(Color::Gray)
    }

    pub fn value(&self) -> Style {
        Style::new().add_modifier(Modifier::BOLD)
    }

    pub fn good(&self) -> Style {
        self.fg(Color::Green)
    }

    pub fn warn(&self) -> Style {
        self.fg(Color::Yellow).add_modifier(Modifier::BOLD)
    }

    pub fn error(&self) -> Style {
        self.fg(Color::Red).add_modifier(Modifier::BOLD)
    }

    pub fn level(&self, level: Level) -> Style {
        match level {
            Level::Ok => self.good(),
            Level::Warn => self.fg(Color::Yellow),
            Level::Danger => {
                if self.mono {
                    Style::new().add_modifier(Modifier::BOLD)
                } else {
                    Style::new().fg(Color::Red).add_modifier(Modifier::BOLD)
                }
            }
            Level::None => self.dim(),
        }
    }

    /// The switch when on: filled, so it reads in monochrome as well.
    pub fn switch_on(&self) -> Style {
        self.filled(Color::Black, Color::Green)
    }

    /// Bold on a coloured background; reverse video in monochrome.
    fn filled(&self, fg: Color, bg: Color) -> Style {
        if self.mono {
            Style::new().add_modifier(Modifier::REVERSED | Modifier::BOLD)
        } else {
            Style::new().fg(fg).bg(bg).add_modifier(Modifier::BOLD)
        }
    }

    pub fn tab_active(&self) -> Style {
        self.filled(Color::Black, Color::Cyan)
    }

    pub fn button(&self, focused: bool) -> Style {
        if focused {
            self.selected()
        } else {
            Style::new().add_modifier(Modifier::BOLD)
        }
    }

    pub fn input(&self, focused: bool) -> Style {
        match (self.mono, focused) {
            (true, true) => Style::new().add_modifier(Modifier::UNDERLINED | Modifier::BOLD),
            (true, false) => Style::new().add_modifier(Modifier::UNDERLINED),
            (false, true) => Style::new().fg(Color::White).bg(Color::DarkGray),
            (false, false) => Style::new().fg(Color::Gray),
        }
    }

    pub fn sparkline(&self, idle: bool) -> Style {
        self.fg(if idle { Color::Magenta } else { Color::Green })
    }
}
